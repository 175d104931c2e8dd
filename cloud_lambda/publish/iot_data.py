"""AWS IoT data plane publisher (``iot-data`` ``Publish``), the narrow adapter tested with Stubber."""

from __future__ import annotations

from typing import Any

from cloud_lambda.publish.base import MatchPublisher, MatchPublishError


class IotDataMatchPublisher(MatchPublisher):
    name = "iot-data"

    def __init__(self, client: Any = None, endpoint: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("iot-data", endpoint_url=f"https://{endpoint}" if endpoint else None)
        self._client = client

    def publish(self, topic: str, payload: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.publish(topic=topic, qos=1, payload=payload)
        except (BotoCoreError, ClientError) as exc:
            raise MatchPublishError(f"iot-data publish to {topic} failed: {exc}") from exc
