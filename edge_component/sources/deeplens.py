"""Legacy AWS DeepLens camera via ``awscam.getLastFrame()``; imported only where ``awscam`` exists."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from edge_component.config import SourceConfig
from edge_component.sources.base import FrameReader, SourceError, register_reader


@register_reader
class DeepLensReader(FrameReader):
    kind = "deeplens"

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> DeepLensReader:
        if importlib.util.find_spec("awscam") is None:
            raise SourceError("source.kind 'deeplens' needs the 'awscam' module, which exists only on a DeepLens")
        return cls()

    def __init__(self) -> None:
        self._awscam: Any = None

    def open(self) -> None:
        try:
            self._awscam = importlib.import_module("awscam")
        except ImportError as exc:
            raise SourceError("the 'awscam' module is not installed: kind=deeplens runs only on a DeepLens") from exc

    def read(self) -> np.ndarray:
        ok, frame = self._awscam.getLastFrame()
        if not ok or frame is None:
            raise SourceError("awscam.getLastFrame() returned no frame")
        return np.asarray(frame)

    def close(self) -> None:
        self._awscam = None

    def describe(self) -> str:
        return "deeplens:awscam"
