"""A video file: at its own frame rate (a live source) or as fast as the loop takes frames; optional loop."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from edge_component.config import SourceConfig
from edge_component.sources.base import EndOfStream, SourceError, register_reader
from edge_component.sources.opencv_capture import CaptureReader, open_capture, read_frame


@register_reader
class VideoFileReader(CaptureReader):
    kind = "video"

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> VideoFileReader:
        assert cfg.path is not None  # checked by SourceConfig
        return cls(cfg.path, loop=cfg.loop, realtime=cfg.realtime, fps=cfg.fps)

    def __init__(self, path: str, loop: bool = False, realtime: bool = True, fps: float | None = None) -> None:
        self.path = path
        self.loop = loop
        self.realtime = realtime
        self.fps_override = fps
        self.fps: float = fps or 0.0
        self._next_at = 0.0

    @property
    def live(self) -> bool:
        return self.realtime

    def open(self) -> None:
        if not Path(self.path).is_file():
            raise SourceError(f"video file {self.path} does not exist")
        self._capture = open_capture(self.path)
        file_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = self.fps_override or (file_fps if 0 < file_fps < 1000 else 25.0)
        self._next_at = time.monotonic()

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is None:
            if not self.loop:
                raise EndOfStream()
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = read_frame(self._capture, self.describe())
            if frame is None:
                raise SourceError(f"video file {self.path} has no readable frames")
        if self.realtime:
            # Pace against an absolute schedule so decode time does not slow the nominal rate.
            self._next_at += 1.0 / self.fps
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                self._next_at = time.monotonic()
        return frame

    def describe(self) -> str:
        return f"video:{self.path}"
