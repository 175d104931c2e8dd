"""USB/V4L2 camera by index (``/dev/videoN``)."""

from __future__ import annotations

import sys

import cv2
import numpy as np

from edge_component.config import SourceConfig
from edge_component.sources.base import SourceError, register_reader
from edge_component.sources.opencv_capture import CaptureReader, open_capture


@register_reader
class CameraReader(CaptureReader):
    kind = "camera"

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> CameraReader:
        return cls(cfg.camera_index, cfg.width, cfg.height)

    def __init__(self, index: int, width: int | None = None, height: int | None = None) -> None:
        self.index = index
        self.width = width
        self.height = height

    def open(self) -> None:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        try:
            capture = open_capture(self.index, api)
        except SourceError:
            raise SourceError(
                f"cannot open camera /dev/video{self.index} (not connected, in use by another program, or no"
                " permission: the user needs the 'video' group)"
            ) from None
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        # One buffered frame: the driver's queue would otherwise add several frames of latency.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is None:
            raise SourceError(f"camera /dev/video{self.index} returned no frame (unplugged or in use?)")
        return frame

    def describe(self) -> str:
        return f"camera:/dev/video{self.index}"
