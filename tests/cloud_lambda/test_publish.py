"""Match records published to visualsearch/{device}/matches: MQTT on a real mosquitto, IoT data plane via Stubber."""

from __future__ import annotations

import json
import queue

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.stub import Stubber

from cloud_lambda.publish import MatchPublishError, NullMatchPublisher, create_match_publisher
from cloud_lambda.publish.iot_data import IotDataMatchPublisher
from cloud_lambda.search.service import SearchService
from tests.cloud_lambda.conftest import TinyCatalog, feature_event


def test_mqtt_publish_reaches_a_subscriber(mosquitto, cloud_settings, tiny_catalog: TinyCatalog):
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="web-test")
    sub.on_message = lambda c, u, m: received.put((m.topic, m.payload))
    subscribed = queue.Queue()
    sub.on_subscribe = lambda *a: subscribed.put(True)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    sub.subscribe("visualsearch/+/matches", qos=1)
    subscribed.get(timeout=5)
    publisher = create_match_publisher(f"mqtt://127.0.0.1:{mosquitto.port}")
    service = SearchService(cloud_settings, publisher)
    try:
        result = service.handle_feature_event(feature_event(tiny_catalog.vectors[9], tiny_catalog.model_id, seq=7))
        assert result["status"] == "accepted"
        topic, payload = received.get(timeout=5)
        record = json.loads(payload)
        assert topic == "visualsearch/cam-01/matches"
        assert record["seq"] == 7 and record["matches"][0]["id"] == "item-009"
        assert record == service.matches.latest("cam-01", 1)[0]
        # A replay is deduplicated: stored once, published once.
        assert (
            service.handle_feature_event(feature_event(tiny_catalog.vectors[9], tiny_catalog.model_id, seq=7))["status"]
            == "duplicate"
        )
        with pytest.raises(queue.Empty):
            received.get(timeout=0.5)
    finally:
        publisher.close()
        sub.loop_stop()
        sub.disconnect()


def test_publish_failure_is_counted_not_fatal(cloud_settings, tiny_catalog: TinyCatalog):
    class Broken(NullMatchPublisher):
        def publish(self, topic: str, payload: bytes) -> None:
            raise MatchPublishError("broker gone")

    service = SearchService(cloud_settings, Broken())
    result = service.handle_feature_event(feature_event(tiny_catalog.vectors[1], tiny_catalog.model_id, seq=3))
    assert result["status"] == "accepted"  # stored in Redis: the web app still sees it
    assert service.counters.get("publish_failed") == 1
    assert service.matches.latest("cam-01", 1)[0]["seq"] == 3


def test_mqtt_publisher_refuses_unreachable_broker():
    from simulator.stack.processes import free_port

    with pytest.raises(MatchPublishError, match="cannot connect"):
        create_match_publisher(f"mqtt://127.0.0.1:{free_port()}")


def test_iot_data_publisher_with_stubber():
    client = boto3.client(
        "iot-data",
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url="https://abc-ats.iot.eu-west-1.amazonaws.com",
    )
    stub = Stubber(client)
    stub.add_response("publish", {}, {"topic": "visualsearch/cam-01/matches", "qos": 1, "payload": b'{"v":1}'})
    stub.add_client_error("publish", service_error_code="ThrottlingException", http_status_code=429)
    with stub:
        publisher = IotDataMatchPublisher(client)
        publisher.publish("visualsearch/cam-01/matches", b'{"v":1}')
        with pytest.raises(MatchPublishError, match="ThrottlingException"):
            publisher.publish("visualsearch/cam-01/matches", b'{"v":1}')
    stub.assert_no_pending_responses()
