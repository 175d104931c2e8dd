"""Shared ``cv2.VideoCapture`` handling for the camera, stream and video readers."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge_component.sources.base import FrameReader, SourceError


def open_capture(target: int | str, api: int = cv2.CAP_ANY, params: list[int] | None = None) -> Any:
    """Open ``target`` or raise :class:`SourceError`; never returns a capture that is not opened."""
    capture = cv2.VideoCapture(target, api, params or [])
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {target!r}")
    return capture


def read_frame(capture: Any, what: str) -> np.ndarray | None:
    """One frame, or None when the capture has none (end of file, dropped stream)."""
    try:
        ok, frame = capture.read()
    except cv2.error as exc:
        raise SourceError(f"{what}: read failed: {exc}") from exc
    if not ok or frame is None or frame.size == 0:
        return None
    return np.asarray(frame)


class CaptureReader(FrameReader):
    """Base of the readers over one ``cv2.VideoCapture`` (camera, stream, video): holds, reads, releases it."""

    _capture: Any = None

    def _grab(self) -> np.ndarray | None:
        """The next frame, or None when the capture has none; subclasses decide what a missing frame means."""
        if self._capture is None:
            raise SourceError(f"{self.kind} is not open")
        return read_frame(self._capture, self.describe())

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
