"""RTSP/HTTP network stream (IP cameras, MJPEG over HTTP), read through OpenCV's FFmpeg backend."""

from __future__ import annotations

import re

import cv2
import numpy as np

from edge_component.config import SourceConfig
from edge_component.sources.base import SourceError, register_reader
from edge_component.sources.opencv_capture import CaptureReader, open_capture


@register_reader
class StreamReader(CaptureReader):
    kind = "stream"

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> StreamReader:
        assert cfg.url is not None  # checked by SourceConfig
        return cls(cfg.url, timeout_s=cfg.stall_timeout_s)

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def open(self) -> None:
        # Open and read timeouts make a stalled stream return instead of blocking the grabber forever.
        timeout_ms = int(self.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        api = cv2.CAP_FFMPEG if "://" in self.url else cv2.CAP_ANY
        self._capture = open_capture(self.url, api, params)

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is None:
            # A live stream has no end: a missing frame means the link dropped, so reconnect.
            raise SourceError("stream returned no frame (dropped or ended)")
        return frame

    def describe(self) -> str:
        # Never log stream credentials (rtsp://user:password@host/...).
        return "stream:" + re.sub(r"//[^/@]*@", "//***@", self.url)
