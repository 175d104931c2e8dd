"""Publishers chosen by configuration; see :mod:`edge_component.publishers.base` for queue semantics."""

from __future__ import annotations

import importlib.util
from typing import Any

from edge_component.config import EdgeConfig
from edge_component.publishers.base import Outbound, OutboundQueue, Publisher, PublishError


def create_publisher(cfg: EdgeConfig) -> Publisher:
    p = cfg.publish
    common: dict[str, Any] = {"capacity": p.queue_capacity, "qos": p.qos, "timeout_s": p.timeout_s}
    if p.kind == "mqtt":
        from edge_component.publishers.mqtt import MqttPublisher

        return MqttPublisher(cfg.device_id, p.mqtt, **common)
    if p.kind == "greengrass":
        from edge_component.publishers.greengrass import GreengrassIpcPublisher

        return GreengrassIpcPublisher(cfg.device_id, **common)
    if p.kind == "stdout":
        from edge_component.publishers.debug import StdoutPublisher

        return StdoutPublisher(cfg.device_id, **common)
    if p.kind == "file":
        from edge_component.publishers.debug import FilePublisher

        assert p.file_path is not None  # checked by PublishConfig
        return FilePublisher(cfg.device_id, p.file_path, **common)
    if p.kind == "greengrass_v1":
        if importlib.util.find_spec("greengrasssdk") is None:
            raise PublishError("publish.kind 'greengrass_v1' needs the 'greengrasssdk' module (Greengrass v1 only)")
        from edge_component.publishers.greengrass_v1 import GreengrassV1Publisher

        return GreengrassV1Publisher(cfg.device_id, **common)
    raise PublishError(f"unknown publish kind {p.kind!r}")


__all__ = ["Outbound", "OutboundQueue", "PublishError", "Publisher", "create_publisher"]
