"""At-least-once that holds when the store refuses writes or is down longer than the retry budget.

Before: with ``maxmemory`` reached every message was dropped after 4.2 s of retries and ``/api/health`` still
said ok; a Redis outage longer than the retry budget lost messages already acked to the broker while the
device reported 0 dropped. Now the bridge acks a message only once it is stored or in its durable spool,
and replays the spool, oldest first, when the store takes writes again. Real mosquitto, redis-server and
bridge; the promise checked is "every message stored, in order of first arrival", not a count of attempts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.api import handler as api
from cloud_lambda.matches import MatchStoreUnavailable
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.topics import features_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess, PythonServiceProcess, RedisProcess
from tests.hardening.conftest import Catalog, count_case
from tests.wait import wait_for

pytestmark = pytest.mark.slow
DEVICE = "cam-sf"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[MosquittoProcess, RedisProcess]]:
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto", persistence=True).start()
    store = RedisProcess(workdir=tmp_path / "redis", appendonly=True).start()
    try:
        yield broker, store
    finally:
        store.stop()
        broker.stop()


def publisher(broker: MosquittoProcess) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sf-device")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, catalog: Catalog, seqs: range) -> None:
    for seq in seqs:
        message = FeatureMessage(DEVICE, seq, time.time(), catalog.model_id, catalog.vectors[seq % 8])
        client.publish(features_topic(DEVICE), encode(message), qos=1).wait_for_publish(5)


def stored_in_order(client: redis.Redis) -> list[int]:
    """Seqs of the device's records, oldest first (LPUSH keeps the newest at the head)."""
    return [json.loads(raw)["seq"] for raw in reversed(client.lrange(f"visualsearch:matches:{DEVICE}", 0, -1))]


def make_service(catalog: Catalog, store: RedisProcess) -> SearchService:
    settings = CloudSettings.build(index_dir=str(catalog.folder), redis_url=store.url, redis_timeout_s=0.5)
    return SearchService(settings)


def make_bridge(service: SearchService, broker: MosquittoProcess, spool: Path) -> RuleBridge:
    return RuleBridge(
        service.handle_feature_event,
        service.handle_status_event,
        port=broker.port,
        client_id="sf-bridge",
        retry_delays_s=(0.1, 0.2),
        workers=2,
        spool_dir=spool,
        transient=(MatchStoreUnavailable,),
        replay_backoff_s=(0.2, 0.5),
    )


def test_a_store_that_refuses_writes_loses_nothing_and_health_says_so(
    parts: tuple[MosquittoProcess, RedisProcess], hardening_catalog: Catalog, tmp_path: Path
) -> None:
    count_case("store: refuses writes (maxmemory)")
    broker, store = parts
    client = redis.Redis(host=store.host, port=store.port)
    service = make_service(hardening_catalog, store)
    bridge = make_bridge(service, broker, tmp_path / "spool")
    bridge.start()
    device = publisher(broker)
    try:
        publish(device, hardening_catalog, range(1, 4))
        wait_for(lambda: len(stored_in_order(client)) == 3, what="first records")
        client.config_set("maxmemory", "1")  # noeviction (the default policy): every write is refused with OOM
        api.set_service(service)
        health = api.lambda_handler({"rawPath": "/api/health", "requestContext": {"http": {"method": "GET"}}}, None)
        body = json.loads(health["body"])
        assert health["statusCode"] == 503 and body["redis"] == "refusing_writes", body
        publish(device, hardening_catalog, range(4, 12))
        wait_for(lambda: bridge.counts["spooled"] >= 8, what="messages parked in the spool")
        assert stored_in_order(client) == [1, 2, 3]
        client.config_set("maxmemory", "0")
        wait_for(lambda: len(stored_in_order(client)) == 11, what="the spool to replay")
        health = api.lambda_handler({"rawPath": "/api/health", "requestContext": {"http": {"method": "GET"}}}, None)
        assert health["statusCode"] == 200
    finally:
        api.set_service(None)
        device.loop_stop()
        bridge.stop()
        service.metadata.close()
    assert stored_in_order(client) == list(range(1, 12))  # every message, once, in order of first arrival
    assert bridge.counts["replayed"] == bridge.counts["spooled"] and bridge.spool_depth() == 0
    assert bridge.counts["error:features"] == 0 and bridge.counts["dead_letter"] == 0


def test_a_store_down_longer_than_the_retry_budget_loses_nothing(
    parts: tuple[MosquittoProcess, RedisProcess], hardening_catalog: Catalog, tmp_path: Path
) -> None:
    count_case("store: down past the retry budget")
    broker, store = parts
    client = redis.Redis(host=store.host, port=store.port)
    service = make_service(hardening_catalog, store)
    bridge = make_bridge(service, broker, tmp_path / "spool")
    bridge.start()
    device = publisher(broker)
    try:
        publish(device, hardening_catalog, range(1, 3))
        wait_for(lambda: len(stored_in_order(client)) == 2, what="first records")
        store.kill()
        publish(device, hardening_catalog, range(3, 10))
        wait_for(lambda: bridge.counts["spooled"] >= 7, what="messages parked in the spool")
        time.sleep(0.5)  # well past the 0.3 s retry budget: before, these were acked and gone
        store.start()
        wait_for(lambda: len(stored_in_order(client)) == 9, what="the spool to replay")
    finally:
        device.loop_stop()
        bridge.stop()
        service.metadata.close()
    assert stored_in_order(client) == list(range(1, 10))


def test_a_bridge_killed_with_a_full_spool_replays_it_after_a_restart(
    parts: tuple[MosquittoProcess, RedisProcess], hardening_catalog: Catalog, tmp_path: Path
) -> None:
    """The real bridge process, SIGKILLed while its spool holds messages the broker no longer has."""
    count_case("store: bridge killed with a non-empty spool")
    broker, store = parts
    client = redis.Redis(host=store.host, port=store.port)
    bridge = PythonServiceProcess(
        name="bridge",
        workdir=tmp_path / "bridge",
        module="simulator.stack.bridge",
        args=[
            *("--mqtt-port", str(broker.port), "--ready-file", str(tmp_path / "bridge" / "ready")),
            *("--spool-dir", str(tmp_path / "spool"), "--stats-every", "0.2"),
        ],
        ready_file=tmp_path / "bridge" / "ready",
        env={"VS_INDEX_DIR": str(hardening_catalog.folder), "VS_REDIS_URL": store.url, "VS_REDIS_TIMEOUT_S": "0.5"},
    )
    bridge.start(timeout=60)
    device = publisher(broker)
    try:
        client.config_set("maxmemory", "1")
        publish(device, hardening_catalog, range(1, 7))
        wait_for(lambda: '"spool_depth":6' in bridge.log_path.read_text(), timeout=60, what="six spooled messages")
        bridge.kill()
        client.config_set("maxmemory", "0")
        bridge.start(timeout=60)
        wait_for(lambda: len(stored_in_order(client)) == 6, timeout=60, what="replay after the restart")
    finally:
        device.loop_stop()
        bridge.stop()
    assert stored_in_order(client) == list(range(1, 7))
