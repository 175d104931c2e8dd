"""MatchPublisher interface and factory (``VS_MATCH_PUBLISH``: ``iot-data`` | ``mqtt://host:port`` | ``none``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from model.contracts.errors import VisualSearchError


class MatchPublishError(VisualSearchError, RuntimeError):
    """The record could not be published (it is already stored in Redis)."""


class MatchPublisher(ABC):
    name: str = "publisher"

    @abstractmethod
    def publish(self, topic: str, payload: bytes) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class NullMatchPublisher(MatchPublisher):
    name = "none"

    def publish(self, topic: str, payload: bytes) -> None:
        return None


def create_match_publisher(
    spec: str, iot_endpoint: str | None = None, username: str | None = None, password: str | None = None
) -> MatchPublisher:
    if spec == "none":
        return NullMatchPublisher()
    if spec == "iot-data":
        from cloud_lambda.publish.iot_data import IotDataMatchPublisher

        return IotDataMatchPublisher(endpoint=iot_endpoint)
    if spec.startswith("mqtt://"):
        from cloud_lambda.publish.mqtt import MqttMatchPublisher

        host, _, port = spec[len("mqtt://") :].rpartition(":")
        return MqttMatchPublisher(host, int(port), username=username, password=password)
    raise MatchPublishError(f"unknown publisher {spec!r}: use iot-data, mqtt://host:port or none")
