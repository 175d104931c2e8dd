"""A folder of images, in name order; optionally looping and paced at ``fps``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_component.config import SourceConfig
from edge_component.sources.base import EndOfStream, FrameReader, SourceError, register_reader
from model.image_rules import ImageRejected, frame_dimensions
from model.logs import log_event

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 7680 * 4320
"""8K UHD: the largest frame a camera sends."""
MAX_FRAME_BYTES = 64 * 1024 * 1024


def load_frame(path: Path) -> tuple[np.ndarray | None, str]:
    """(image, "") or (None, why not). The size comes from the file's header first, as catalog indexing and
    photo search do: a 389 KB PNG declaring 20000x20000 would otherwise take 1.2 GB to decode."""
    try:
        if path.stat().st_size > MAX_FRAME_BYTES:
            return None, f"file is over {MAX_FRAME_BYTES:,} bytes"
        data = path.read_bytes()
        info = frame_dimensions(data)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    except ImageRejected as exc:
        return None, str(exc)
    if max(info.width, info.height) > MAX_FRAME_SIDE or info.width * info.height > MAX_FRAME_PIXELS:
        return None, f"{info.width}x{info.height} px is over the frame limit ({MAX_FRAME_SIDE} px a side, 8K UHD)"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return (image, "") if image is not None else (None, f"{info.format.upper()} header is valid but it does not decode")


@register_reader
class FolderReader(FrameReader):
    kind = "folder"

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> FolderReader:
        assert cfg.path is not None  # checked by SourceConfig
        return cls(cfg.path, loop=cfg.loop, fps=cfg.fps, realtime=cfg.realtime)

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
            image, problem = load_frame(path)
            if image is None:
                # One bad file must not stop the folder: skip it and say which, and why.
                self.unreadable += 1
                log_event(log, "unreadable_image_skipped", logging.WARNING, path=str(path), reason=problem)
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
