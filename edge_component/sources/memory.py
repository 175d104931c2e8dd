"""Frames already in memory, handed over one by one: for embedding the loop behind another pipeline that
decodes frames itself, and for benches and tests that must isolate the loop from decoding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_component.sources.base import EndOfStream, FrameReader


class MemoryReader(FrameReader):
    """Each frame once, in order, then :class:`EndOfStream`; not live, so the loop takes every frame."""

    kind = "memory"

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        self.frames = frames
        self._pos = 0

    @property
    def live(self) -> bool:
        return False

    def open(self) -> None:
        self._pos = 0

    def read(self) -> np.ndarray:
        if self._pos >= len(self.frames):
            raise EndOfStream()
        self._pos += 1
        return self.frames[self._pos - 1]

    def close(self) -> None:
        pass
