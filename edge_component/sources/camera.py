"""USB/V4L2 camera by index (``/dev/videoN``)."""

from __future__ import annotations

import sys

import cv2
import numpy as np

from edge_component.sources.base import SourceError
from edge_component.sources.opencv_capture import CaptureReader, open_capture


class CameraReader(CaptureReader):
    kind = "camera"

    def __init__(self, index: int, width: int | None = None, height: int | None = None) -> None:
        self.index = index
        self.width = width
        self.height = height

    def open(self) -> None:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        capture = open_capture(self.index, api)
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        # One buffered frame: the driver's queue would otherwise add several frames of latency.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is None:
            raise SourceError("camera returned no frame (unplugged or in use?)")
        return frame

    def describe(self) -> str:
        return f"camera:/dev/video{self.index}"
