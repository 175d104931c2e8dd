"""MQTT via paho 2.x: AWS IoT Core (mutual TLS on 8883, client id = thing name) or any broker.

paho keeps QoS 1 messages it has been handed across reconnects and re-sends them in order, so this
publisher waits for their PUBACK instead of re-sending them itself (that would duplicate and reorder).
The last will on the status topic marks the device offline if the connection dies without a goodbye.
"""

from __future__ import annotations

import logging
import ssl
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_component.config import EdgeConfig, MqttConfig
from edge_component.publishers.base import Outbound, Publisher, PublishError, completed, register_publisher
from model.contracts.status import offline_payload
from model.contracts.topics import status_topic
from model.logs import log_event

log = logging.getLogger(__name__)


@register_publisher
class MqttPublisher(Publisher):
    kind = "mqtt"
    retransmits_inflight = True

    @classmethod
    def from_config(cls, cfg: EdgeConfig, **common: Any) -> MqttPublisher:
        return cls(cfg.device_id, cfg.publish.mqtt, **common)

    def __init__(self, device_id: str, mqtt_cfg: MqttConfig, **kwargs: Any) -> None:
        super().__init__(
            device_id,
            max_inflight=mqtt_cfg.max_inflight,
            reconnect_min_s=mqtt_cfg.reconnect_min_s,
            reconnect_max_s=mqtt_cfg.reconnect_max_s,
            **kwargs,
        )
        self.cfg = mqtt_cfg
        self.client_id = mqtt_cfg.client_id or device_id
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._futures: dict[int, Future[Any]] = {}
        self._early_acks: set[int] = set()
        self.connects = 0
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        client.will_set(status_topic(self.device_id), offline_payload(self.device_id), qos=1, retain=False)
        if self.cfg.username:
            password = Path(self.cfg.password_file).read_text().strip() if self.cfg.password_file else None
            client.username_pw_set(self.cfg.username, password)
        if self.cfg.ca_file:
            client.tls_set(
                ca_certs=self.cfg.ca_file,
                certfile=self.cfg.cert_file,
                keyfile=self.cfg.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(
            min_delay=max(1, round(self.cfg.reconnect_min_s)), max_delay=max(1, round(self.cfg.reconnect_max_s))
        )
        # The outbound queue above is the bounded buffer; paho only holds the in-flight window.
        client.max_inflight_messages_set(self.cfg.max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        return client

    # --- hooks -------------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            raise PublishError(f"mqtt {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        info = self._client.publish(item.topic, item.payload, qos=qos, retain=False)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # NO_CONN is fine: paho queued it and sends it after the reconnect.
            return completed(error=PublishError(f"paho refused the publish: {mqtt.error_string(info.rc)}"))
        if qos == 0:
            return completed()
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                return completed()
            future: Future[Any] = Future()
            self._futures[info.mid] = future
            return future

    def _send_offline_status(self) -> None:
        info = self._client.publish(status_topic(self.device_id), offline_payload(self.device_id), qos=1)
        info.wait_for_publish(timeout=min(self.timeout_s, 2.0))

    def _close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # --- paho callbacks (network thread: no blocking work here) -------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._error(f"mqtt {self.cfg.host}:{self.cfg.port} refused the connection: {reason}")
            return
        self.connects += 1
        self._connected.set()
        log_event(log, "mqtt_connected", host=self.cfg.host, port=self.cfg.port, client_id=self.client_id)
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if self._stop.is_set():
            return
        if was:
            self._error(f"mqtt disconnected: {reason}")
        else:
            # TLS 1.3 finishes the handshake before the broker checks the client certificate, so a
            # missing or unknown certificate shows up as a close before CONNACK.
            self._error(
                f"mqtt {self.cfg.host}:{self.cfg.port} closed the connection before accepting it "
                f"(client certificate or credentials refused?): {reason}"
            )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._error(f"mqtt connection to {self.cfg.host}:{self.cfg.port} failed (broker down, TLS or auth refused)")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            future = self._futures.pop(mid, None)
            if future is None:
                self._early_acks.add(mid)
                return
        future.set_result(None)
        self._wake.set()
