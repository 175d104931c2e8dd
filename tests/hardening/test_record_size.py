"""Match records stay within IoT Core's 128 KB, measured where IoT Core measures: raw bytes.

A 1 MB catalog title became a 1 MB match record, kept up to 100 times per device and published on MQTT past
the limit; the bridge measured the re-serialized event instead of the bytes that arrived; mosquitto had no
``message_size_limit``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.publish.base import MatchPublisher
from cloud_lambda.search.service import MAX_RECORD_BYTES, SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.limits import MAX_PAYLOAD_BYTES
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess, RedisProcess
from tests.hardening.conftest import Catalog, count_case


class Recording(MatchPublisher):
    name = "recording"

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.sizes.append(len(payload))


def test_a_huge_title_cannot_grow_a_record_past_the_mqtt_limit(
    hardening_catalog: Catalog, module_redis: RedisProcess
) -> None:
    count_case("record: 1 MB title in stored metadata")
    settings = CloudSettings.build(
        index_dir=str(hardening_catalog.folder), redis_url=module_redis.url, top_k=8, match_list_cap=3
    )
    publisher = Recording()
    service = SearchService(settings, publisher)
    huge = [
        ItemRecord(
            id=f"item-{i}", model_id=hardening_catalog.model_id, title="T" * 1_000_000, extra={"n": "x" * 50_000}
        )
        for i in range(8)
    ]
    originals = service.metadata.get_many([r.id for r in huge])
    service.metadata.put_many(huge)
    try:
        for seq in (1, 2):
            message = FeatureMessage(
                "cam-big", seq, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[2]
            )
            result = service.handle_feature_event({**json.loads(encode(message)), "topic_device": "cam-big"})
            assert result["status"] in ("accepted", "duplicate"), result
        stored = service.matches.client.lrange("visualsearch:matches:cam-big", 0, -1)
        assert stored and all(len(raw) <= MAX_RECORD_BYTES for raw in stored)
        assert publisher.sizes and max(publisher.sizes) <= MAX_PAYLOAD_BYTES
        record = json.loads(stored[0])
        assert record["matches"][0]["id"] == "item-2" and record["trimmed"] is True
        assert service.counters.get("record_trimmed") >= 1
    finally:
        service.metadata.put_many(originals.values())
        service.metadata.close()


def test_the_bridge_measures_the_raw_bytes(hardened_service: SearchService, hardening_catalog: Catalog) -> None:
    count_case("bridge: padded payload over 128 KB")
    message = encode(
        FeatureMessage("cam-pad", 1, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[0])
    )
    padded = message[:-1] + b" " * (MAX_PAYLOAD_BYTES + 1 - len(message)) + b"}"
    assert len(padded) == MAX_PAYLOAD_BYTES + 1 and len(json.dumps(json.loads(padded))) < MAX_PAYLOAD_BYTES
    bridge = RuleBridge(
        hardened_service.handle_feature_event, hardened_service.handle_status_event, retry_delays_s=(), client_id="t"
    )
    assert bridge.handle("visualsearch/cam-pad/features", padded) is None
    assert bridge.counts["rejected:oversize"] == 1
    exact = message[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(message)) + b"}"
    assert bridge.handle("visualsearch/cam-pad/features", exact)["status"] == "accepted"  # type: ignore[index]


@pytest.mark.slow
def test_mosquitto_refuses_what_iot_core_refuses(tmp_path: Path) -> None:
    count_case("broker: publish over 128 KB")
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto").start()
    received: list[int] = []
    done = threading.Event()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(len(message.payload))
        if message.payload[:1] == b"e":
            done.set()

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
    try:
        sub.connect(broker.host, broker.port)
        sub.subscribe("visualsearch/#", qos=1)
        sub.loop_start()
        assert subscribed.wait(10), "no SUBACK"
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        for payload in (b"a" * (MAX_PAYLOAD_BYTES + 1), b"b" * MAX_PAYLOAD_BYTES, b"end"):
            pub.publish("visualsearch/cam/features", payload, qos=0)
        assert done.wait(10)
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()
        broker.stop()
    assert received == [MAX_PAYLOAD_BYTES, 3], received
