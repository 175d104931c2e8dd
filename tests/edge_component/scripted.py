"""A frame reader driven by the test: it yields the frames it is given, when the test releases them.

It plugs into the real :class:`FrameSource` (grabber thread, watchdog) like any camera would, so tests
control exactly how many frames exist and when, which makes counting losses exact.
"""

from __future__ import annotations

import threading

import numpy as np

from edge_component.sources.base import EndOfStream, FrameReader, SourceError


class ScriptedReader(FrameReader):
    kind = "scripted"

    def __init__(self, frames: list[np.ndarray], live: bool = False) -> None:
        self.frames = frames
        self._live = live
        self._released = threading.Semaphore(0)
        self._pos = 0
        self.fail_next = threading.Event()
        self.opened = 0

    @property
    def live(self) -> bool:
        return self._live

    def release(self, count: int) -> None:
        for _ in range(count):
            self._released.release()

    def open(self) -> None:
        self.opened += 1

    def read(self) -> np.ndarray:
        while not self._released.acquire(timeout=0.05):
            if self.fail_next.is_set():
                self.fail_next.clear()
                raise SourceError("scripted failure")
        if self._pos >= len(self.frames):
            raise EndOfStream()
        frame = self.frames[self._pos]
        self._pos += 1
        return frame

    def close(self) -> None:
        pass
