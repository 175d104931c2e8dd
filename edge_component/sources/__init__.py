"""Frame sources chosen by configuration; see :mod:`edge_component.sources.base`."""

from __future__ import annotations

import importlib.util

from edge_component.config import SourceConfig
from edge_component.sources.base import EndOfStream, Frame, FrameReader, FrameSource, SourceError


def create_reader(cfg: SourceConfig) -> FrameReader:
    # Imports stay inside the branches: the DeepLens module needs awscam, the others cv2.
    if cfg.kind == "camera":
        from edge_component.sources.camera import CameraReader

        return CameraReader(cfg.camera_index, cfg.width, cfg.height)
    if cfg.kind == "stream":
        from edge_component.sources.stream import StreamReader

        assert cfg.url is not None  # checked by SourceConfig
        return StreamReader(cfg.url, timeout_s=cfg.stall_timeout_s)
    if cfg.kind == "video":
        from edge_component.sources.video import VideoFileReader

        assert cfg.path is not None
        return VideoFileReader(cfg.path, loop=cfg.loop, realtime=cfg.realtime, fps=cfg.fps)
    if cfg.kind == "folder":
        from edge_component.sources.folder import FolderReader

        assert cfg.path is not None
        return FolderReader(cfg.path, loop=cfg.loop, fps=cfg.fps, realtime=cfg.realtime)
    if cfg.kind == "deeplens":
        if importlib.util.find_spec("awscam") is None:
            raise SourceError("source.kind 'deeplens' needs the 'awscam' module, which exists only on a DeepLens")
        from edge_component.sources.deeplens import DeepLensReader

        return DeepLensReader()
    raise SourceError(f"unknown source kind {cfg.kind!r}")


def create_source(cfg: SourceConfig) -> FrameSource:
    """The configured input wrapped in the grabber thread and watchdog (not started)."""
    return FrameSource(
        create_reader(cfg),
        stall_timeout_s=cfg.stall_timeout_s,
        reconnect_min_s=cfg.reconnect_min_s,
        reconnect_max_s=cfg.reconnect_max_s,
    )


__all__ = ["EndOfStream", "Frame", "FrameReader", "FrameSource", "SourceError", "create_reader", "create_source"]
