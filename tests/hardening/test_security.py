"""Security: mutual TLS + a per-device ACL on mosquitto mirroring the AWS IoT policy, spoofing refused,
no secrets in logs or status messages, Redis AUTH, and the HTML security headers.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.api import handler as api
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from edge_component.config import EdgeConfig
from edge_component.publishers.mqtt import MqttPublisher
from model.contracts.topics import features_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess, MosquittoTls, RedisProcess
from simulator.stack.tls import make_test_pki
from tests.hardening.conftest import Catalog
from tests.wait import stays_false, wait_for

# The AWS IoT policy scopes publishes to visualsearch/${iot:Connection.Thing.ThingName}/*; with
# use_identity_as_username the certificate CN is the username and %u is the same scoping in mosquitto.
DEVICE_ACL = """\
pattern write visualsearch/%u/features
pattern write visualsearch/%u/status
pattern write visualsearch/%u/thumbnail
pattern read visualsearch/%u/matches
user rule-bridge
topic read visualsearch/+/features
topic read visualsearch/+/status
topic read visualsearch/+/thumbnail
"""


@pytest.mark.slow
def test_mtls_acl_device_publishes_only_under_its_own_topic_and_spoofing_is_refused(
    tmp_path: Path, hardening_catalog: Catalog, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_test_pki(tmp_path / "pki", client_name="cam-01")
    acl = tmp_path / "acl"
    acl.write_text(DEVICE_ACL)
    broker = MosquittoProcess(
        workdir=tmp_path / "mosquitto",
        tls=MosquittoTls(cafile=pki.ca.cert, certfile=pki.server.cert, keyfile=pki.server.key),
        acl_file=acl,
        # mosquitto drops root privileges to the 'mosquitto' user, which cannot read pytest's 0700 folders.
        extra_config=f"user {getpass.getuser()}" if os.geteuid() == 0 else "",
        # The plain listener is for the trusted rule bridge only (username, no certificate).
    ).start()
    settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=redis_server.url)
    service = SearchService(settings)
    bridge = RuleBridge(
        service.handle_feature_event, service.handle_status_event, port=broker.port, client_id="rule-bridge"
    )
    bridge._client.username_pw_set("rule-bridge")
    store = redis.Redis(host=redis_server.host, port=redis_server.port)
    bridge.start()
    assert broker.tls is not None
    config = EdgeConfig.model_validate(
        {
            "device_id": "cam-01",
            "publish": {
                "kind": "mqtt",
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.tls.port,
                    "ca_file": str(pki.ca.cert),
                    "cert_file": str(pki.client.cert),
                    "key_file": str(pki.client.key),
                },
            },
        }
    )
    device = MqttPublisher("cam-01", config.publish.mqtt).start()
    try:
        wait_for(lambda: device.connected, what="the device to connect with its certificate")
        vector = hardening_catalog.vectors[0]
        own = FeatureMessage("cam-01", 1, time.time(), hardening_catalog.model_id, vector)
        other_topic = FeatureMessage("cam-02", 1, time.time(), hardening_catalog.model_id, vector)
        spoofed_payload = FeatureMessage("cam-02", 2, time.time(), hardening_catalog.model_id, vector)
        device.publish(features_topic("cam-02"), encode(other_topic), seq=1)  # denied by the ACL
        device.publish(features_topic("cam-01"), encode(spoofed_payload), seq=2)  # allowed topic, lying payload
        device.publish(features_topic("cam-01"), encode(own), seq=3)
        # A sentinel after the rest: MQTT delivers one client's messages in order (MQTT 3.1.1, 4.6), so once the
        # bridge has stored it, anything the broker let through before it has been received and handled.
        sentinel = FeatureMessage("cam-01", 4, time.time(), hardening_catalog.model_id, vector)
        device.publish(features_topic("cam-01"), encode(sentinel), seq=4)
        assert device.flush(10)
        wait_for(lambda: store.llen("visualsearch:matches:cam-01") == 2, what="the own message and the sentinel")
        assert bridge.counts["features:rejected"] == 1  # the lying payload
        assert store.llen("visualsearch:matches:cam-02") == 0, "a device published for another device"
        assert bridge.counts["received"] - bridge.counts["status:accepted"] - bridge.counts["status:rejected"] == 3
        assert service.counters.get("rejected.device_mismatch") == 1
        # A client without a certificate gets nowhere on the TLS listener.
        anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder")
        anonymous.tls_set(ca_certs=str(pki.ca.cert))
        try:
            anonymous.connect("127.0.0.1", broker.tls.port)
            anonymous.loop_start()
            # TLS 1.3 completes the handshake before the broker checks for a client certificate: the refusal
            # shows as a closed connection, never a CONNACK.
            assert stays_false(anonymous.is_connected, 2), "a client without a certificate got in"
        except OSError:
            pass
        finally:
            anonymous.loop_stop()
    finally:
        device.stop(1.0)
        bridge.stop()
        broker.stop()
        service.metadata.close()
    key_text = pki.client.key.read_text()
    key_body = "".join(key_text.strip().splitlines()[1:-1])[:40]
    logged = "\n".join(r.getMessage() + json.dumps(getattr(r, "__dict__", {}), default=str) for r in caplog.records)
    assert key_body not in logged and "PRIVATE KEY" not in logged


def test_redis_auth_password_never_reaches_logs_status_or_errors(
    tmp_path: Path, hardening_catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-t0ken-ELASTICACHE"
    server = RedisProcess(workdir=tmp_path / "redis", password=secret).start()
    try:
        with pytest.raises(Exception) as refused:  # no password: refused by the server
            redis.Redis(host=server.host, port=server.port).ping()
        assert "auth" in str(refused.value).lower() or "NOAUTH" in str(refused.value)
        caplog.set_level(logging.DEBUG)
        settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=server.url)
        service = SearchService(settings)
        api.set_service(service)
        health = api.lambda_handler({"rawPath": "/api/health", "requestContext": {"http": {"method": "GET"}}}, None)
        assert health["statusCode"] == 200
        server.kill()  # now every call fails: the error paths must not print the URL with its password
        for path in ("/api/health", "/api/devices", "/api/devices/cam-01/matches"):
            response = api.lambda_handler({"rawPath": path, "requestContext": {"http": {"method": "GET"}}}, None)
            assert response["statusCode"] == 503 and secret not in response["body"]
        event = json.loads(
            encode(FeatureMessage("cam-01", 1, time.time(), service.catalog.model_id, hardening_catalog.vectors[0]))
        )
        with pytest.raises(Exception) as failed:
            service.handle_feature_event({**event, "topic_device": "cam-01"})
        assert secret not in str(failed.value)
    finally:
        api.set_service(None)
        server.stop()
    logged = caplog.text + "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert secret not in logged


def test_html_is_served_with_a_restrictive_csp(hardened_service: SearchService) -> None:
    api.set_service(hardened_service)
    try:
        response = api.lambda_handler({"rawPath": "/", "requestContext": {"http": {"method": "GET"}}}, None)
    finally:
        api.set_service(None)
    csp = response["headers"]["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["headers"]["x-content-type-options"] == "nosniff"


def test_settings_repr_hides_the_redis_password(hardening_catalog: Catalog) -> None:
    secret = "s3cr3t-t0ken-ELASTICACHE"
    settings = CloudSettings.build(
        index_dir=str(hardening_catalog.folder), redis_url=f"rediss://:{secret}@cache:6379/0"
    )
    assert secret not in repr(settings) and secret not in settings.model_dump_json()
