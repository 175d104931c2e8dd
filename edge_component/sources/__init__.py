"""Frame sources chosen by configuration; see :mod:`edge_component.sources.base` (one file per kind)."""

from __future__ import annotations

from edge_component.config import SourceConfig
from edge_component.sources.base import (
    READERS,
    EndOfStream,
    Frame,
    FrameReader,
    FrameSource,
    SourceError,
    source_kinds,
)
from model.plugins import unknown_kind


def create_reader(cfg: SourceConfig) -> FrameReader:
    kinds = source_kinds()
    if cfg.kind not in READERS:
        raise SourceError(f"source.kind: {unknown_kind(cfg.kind, 'edge_component.sources', kinds)}")
    return READERS[cfg.kind].from_config(cfg)


def create_source(cfg: SourceConfig) -> FrameSource:
    """The configured input wrapped in the grabber thread and watchdog (not started)."""
    return FrameSource(
        create_reader(cfg),
        stall_timeout_s=cfg.stall_timeout_s,
        reconnect_min_s=cfg.reconnect_min_s,
        reconnect_max_s=cfg.reconnect_max_s,
    )


__all__ = ["EndOfStream", "Frame", "FrameReader", "FrameSource", "SourceError", "create_reader", "create_source"]
