"""MQTT publisher for the local stack (mosquitto), QoS 1, waiting for the broker's PUBACK."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from cloud_lambda.publish.base import MatchPublisher, MatchPublishError


class MqttMatchPublisher(MatchPublisher):
    name = "mqtt"

    def __init__(
        self, host: str, port: int, timeout_s: float = 5.0, username: str | None = None, password: str | None = None
    ) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._lock = threading.Lock()
        # A unique client id: two bridges with the same id would kick each other off (lessons.md).
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"vs-search-{uuid.uuid4().hex[:12]}", clean_session=True
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        if username:
            self._client.username_pw_set(username, password)
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise MatchPublishError(f"cannot connect to MQTT broker {host}:{port}: {exc}") from exc
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:
            info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise MatchPublishError(f"mqtt publish to {topic} failed: rc={info.rc}")
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise MatchPublishError(f"mqtt publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise MatchPublishError(f"mqtt publish to {topic} not acknowledged within {self.timeout_s:.0f} s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
