"""A folder of images, in name order; optionally looping and paced at ``fps``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_component.sources.base import EndOfStream, FrameReader, SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class FolderReader(FrameReader):
    kind = "folder"

    def __init__(self, path: str, loop: bool = False, fps: float | None = None, realtime: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        self.fps = fps
        self.realtime = realtime and fps is not None
        self._files: list[Path] = []
        self._pos = 0
        self._next_at = 0.0
        self.unreadable = 0

    @property
    def live(self) -> bool:
        return self.realtime

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} does not exist")
        self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"image folder {self.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._pos = 0
        self._next_at = time.monotonic()

    def read(self) -> np.ndarray:
        while True:
            if self._pos >= len(self._files):
                if not self.loop:
                    raise EndOfStream()
                self._pos = 0
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                # One bad file must not stop the folder: skip it and say which.
                self.unreadable += 1
                log.warning("unreadable image skipped", extra={"path": str(path)})
                if self.unreadable > 10 * len(self._files):
                    raise SourceError(f"no readable images in {self.path}")
                continue
            break
        if self.realtime and self.fps:
            self._next_at += 1.0 / self.fps
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return np.asarray(image)

    def close(self) -> None:
        self._files = []

    def describe(self) -> str:
        return f"folder:{self.path}"
