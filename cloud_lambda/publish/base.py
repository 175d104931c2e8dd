"""Publisher interface and factory (``VS_MATCH_PUBLISH``: ``iot-data`` | ``mqtt://host:port`` | ``none``)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class PublishError(RuntimeError):
    """The record could not be published (it is already stored in Redis)."""


class Publisher(ABC):
    name: str = "publisher"

    @abstractmethod
    def publish(self, topic: str, payload: bytes) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class NullPublisher(Publisher):
    name = "none"

    def publish(self, topic: str, payload: bytes) -> None:
        return None


def create_publisher(
    spec: str, iot_endpoint: str | None = None, username: str | None = None, password: str | None = None
) -> Publisher:
    if spec == "none":
        return NullPublisher()
    if spec == "iot-data":
        from cloud_lambda.publish.iot_data import IotDataPublisher

        return IotDataPublisher(endpoint=iot_endpoint)
    if spec.startswith("mqtt://"):
        from cloud_lambda.publish.mqtt import MqttPublisher

        host, _, port = spec[len("mqtt://") :].rpartition(":")
        return MqttPublisher(host, int(port), username=username, password=password)
    raise PublishError(f"unknown publisher {spec!r}: use iot-data, mqtt://host:port or none")
