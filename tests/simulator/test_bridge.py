"""The rule bridge on a real mosquitto and redis-server, calling the real SearchService."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.errors import Rejected
from model.contracts.topics import features_topic, status_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge, rule_event
from simulator.stack.processes import MosquittoProcess, RedisProcess
from tests.simulator.conftest import TinyCatalog
from tests.wait import wait_for


@pytest.fixture
def bridge(tiny_catalog: TinyCatalog, mosquitto: MosquittoProcess, redis_server: RedisProcess) -> Iterator[RuleBridge]:
    settings = CloudSettings.build(index_dir=str(tiny_catalog.index_dir), redis_url=redis_server.url, min_score=0.5)
    service = SearchService(settings)
    rule = RuleBridge(service.handle_feature_event, service.handle_status_event, port=mosquitto.port, client_id="t")
    rule.start()
    try:
        yield rule
    finally:
        rule.stop()


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-device")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_rule_event_adds_topic_device_and_rejects_bad_input() -> None:
    kind, event = rule_event("visualsearch/cam-1/features", b'{"v": 1, "seq": 3}')
    assert kind == "features" and event == {"v": 1, "seq": 3, "topic_device": "cam-1"}
    for topic, payload, reason in [
        ("visualsearch/cam-1/features", b"\xff\xfe", "not_json"),
        ("visualsearch/cam-1/features", b"[1, 2]", "not_object"),
        ("visualsearch/cam-1/other", b"{}", "bad_topic"),
        ("visualsearch/cam-1/status", b"{" + b" " * 17000 + b"}", "oversize"),
    ]:
        with pytest.raises(Rejected) as caught:
            rule_event(topic, payload)
        assert caught.value.reason == reason


def test_feature_message_becomes_match_record_and_bad_ones_do_not_stop_it(
    bridge: RuleBridge, tiny_catalog: TinyCatalog, mosquitto: MosquittoProcess, redis_server: RedisProcess
) -> None:
    client = publisher(mosquitto.port)
    store = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        client.publish(features_topic("cam-1"), b"not json at all", qos=1).wait_for_publish(5)
        spoofed = FeatureMessage("cam-2", 1, time.time(), tiny_catalog.model_id, tiny_catalog.vectors["item-a"])
        client.publish(features_topic("cam-1"), encode(spoofed), qos=1).wait_for_publish(5)
        message = FeatureMessage("cam-1", 7, time.time(), tiny_catalog.model_id, tiny_catalog.vectors["item-c"])
        client.publish(features_topic("cam-1"), encode(message), qos=1).wait_for_publish(5)
        status = {"v": 1, "device_id": "cam-1", "ts": time.time(), "state": "online", "fps": 9.5}
        client.publish(status_topic("cam-1"), json.dumps(status), qos=1).wait_for_publish(5)
        raw = wait_for(lambda: store.lindex("visualsearch:matches:cam-1", 0))
        wait_for(lambda: bridge.counts["status:accepted"] == 1)
    finally:
        client.loop_stop()
        client.disconnect()
    record = json.loads(raw)
    assert record["seq"] == 7 and record["device_id"] == "cam-1"
    assert record["matches"][0]["id"] == "item-c"
    assert record["matches"][0]["title"] == "Chelsea's cat bed"
    assert record["searched_at"] >= record["ts"]
    assert store.llen("visualsearch:matches:cam-1") == 1
    assert store.llen("visualsearch:matches:cam-2") == 0  # the spoofed message wrote nothing
    assert bridge.counts["rejected:not_json"] == 1
    assert bridge.counts["features:rejected"] == 1
    status_raw = store.get("visualsearch:status:cam-1")
    assert isinstance(status_raw, bytes) and json.loads(status_raw)["fps"] == 9.5
