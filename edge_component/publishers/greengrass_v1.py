"""Legacy Greengrass v1 / DeepLens: ``greengrasssdk.client('iot-data').publish``; loaded only when present.

It works only inside a v1 core (the SDK needs runtime modules that are not on PyPI); the supported path
is Greengrass v2 IPC (:mod:`edge_component.publishers.greengrass`).
"""

from __future__ import annotations

import importlib
import importlib.util
from concurrent.futures import Future
from typing import Any

from edge_component.config import EdgeConfig
from edge_component.publishers.base import Outbound, Publisher, PublishError, completed, register_publisher


@register_publisher
class GreengrassV1Publisher(Publisher):
    kind = "greengrass_v1"

    @classmethod
    def from_config(cls, cfg: EdgeConfig, **common: Any) -> GreengrassV1Publisher:
        if importlib.util.find_spec("greengrasssdk") is None:
            raise PublishError("publish.kind 'greengrass_v1' needs the 'greengrasssdk' module (Greengrass v1 only)")
        return cls(cfg.device_id, **common)

    def __init__(self, device_id: str, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self._client: Any = None

    def _open(self) -> None:
        try:
            sdk = importlib.import_module("greengrasssdk")
            self._client = sdk.client("iot-data")
        except Exception as exc:
            raise PublishError(f"greengrasssdk is unavailable (runs only inside a Greengrass v1 core): {exc}") from exc

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        try:
            self._client.publish(topic=item.topic, qos=qos, payload=item.payload)
        except Exception as exc:
            return completed(error=PublishError(str(exc)))
        return completed()

    def _close(self) -> None:
        self._client = None
