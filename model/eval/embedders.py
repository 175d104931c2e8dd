"""What is evaluated: a featurizer variant, or the raw-pixel baseline every learned model must beat."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from model.prepare import prepare_frame


class Embedder(Protocol):
    name: str

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images of any size → float32 ``[N, D]``, L2-normalized."""
        ...


class RawPixelEmbedder:
    """16×16 downscaled, mean-centred, L2-normalized pixels of the same prepared frame."""

    def __init__(self, side: int = 16, input_size: int = 224) -> None:
        self.name = f"raw pixels {side}×{side}"
        self._side = side
        self._input_size = input_size

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for image in images:
            small = cv2.resize(
                prepare_frame(image, self._input_size), (self._side, self._side), interpolation=cv2.INTER_AREA
            )
            v = small.astype(np.float32).ravel()
            v -= v.mean()
            rows.append(v / max(float(np.linalg.norm(v)), 1e-6))
        return np.stack(rows)


class FeaturizerEmbedder:
    """A model file on a chosen backend; frames go through the one ``prepare_frame``."""

    def __init__(self, path: Path, backend: str = "auto", threads: int | None = None, batch: int = 16) -> None:
        from model.featurizer import Featurizer

        self._fz = Featurizer(path, backend=backend, threads=threads)
        self.name = f"{self._fz.sidecar.variant} ({self._fz.backend_info.backend})"
        self.model_id = self._fz.model_id
        self._batch = batch

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        size = self._fz.input_size
        out = []
        for i in range(0, len(images), self._batch):
            chunk = np.stack([prepare_frame(im, size) for im in images[i : i + self._batch]])
            out.append(self._fz.featurize(chunk))
        return np.concatenate(out) if out else np.zeros((0, self._fz.dim), np.float32)
