"""Publishers chosen by configuration; see :mod:`edge_component.publishers.base` (one file per transport)."""

from __future__ import annotations

from typing import Any

from edge_component.config import EdgeConfig
from edge_component.publishers.base import (
    PUBLISHERS,
    Outbound,
    OutboundQueue,
    Publisher,
    PublishError,
    publisher_kinds,
)
from model.plugins import unknown_kind


def create_publisher(cfg: EdgeConfig) -> Publisher:
    p = cfg.publish
    kinds = publisher_kinds()
    if p.kind not in PUBLISHERS:
        raise PublishError(f"publish.kind: {unknown_kind(p.kind, 'edge_component.publishers', kinds)}")
    common: dict[str, Any] = {"capacity": p.queue_capacity, "qos": p.qos, "timeout_s": p.timeout_s}
    return PUBLISHERS[p.kind].from_config(cfg, **common)


__all__ = ["Outbound", "OutboundQueue", "PublishError", "Publisher", "create_publisher"]
