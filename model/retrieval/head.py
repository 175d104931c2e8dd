"""A catalog's projection head: the linear map the search applies to every vector before comparing.

Trained per catalog (:mod:`model.adapt`) on views made from the catalog's own images, it maps the device's
vectors (the model's ``dim``) into a smaller space where this catalog's items are far apart. It lives in the
index folder beside the vectors, so the cameras keep their model when the catalog changes: the search
projects each incoming region vector, the index holds projected catalog vectors, and an item added later is
projected by the same head without retraining.

``project(x) = normalize((x - mean) @ weight)``; numpy only (the search Lambda has no torch).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from model.contracts.errors import VisualSearchError

HEAD_FILE = "head.npz"


class HeadError(VisualSearchError, ValueError):
    """A head file that is missing, unreadable or does not fit the vectors it is asked to project."""

    reason = "bad_head"


class ProjectionHead:
    def __init__(self, weight: np.ndarray, mean: np.ndarray) -> None:
        weight = np.asarray(weight, dtype=np.float32)
        mean = np.asarray(mean, dtype=np.float32)
        if weight.ndim != 2 or mean.shape != (weight.shape[0],):
            raise HeadError(f"head weight must be [D, d] and mean [D], got {list(weight.shape)} and {list(mean.shape)}")
        if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(mean))):
            raise HeadError("head weights contain NaN or infinity")
        self.weight = np.ascontiguousarray(weight)
        self.mean = np.ascontiguousarray(mean)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """float32 ``[N, in_dim]`` → ``[N, out_dim]``, each row L2-normalized."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise HeadError(f"the head projects [N, {self.in_dim}] vectors, got {list(x.shape)}")
        out = (x - self.mean) @ self.weight
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, weight=self.weight, mean=self.mean)
        return buffer.getvalue()

    @property
    def sha256(self) -> str:
        """Content hash of the weights (the head's version, recorded in the index manifest)."""
        digest = hashlib.sha256()
        digest.update(self.weight.tobytes())
        digest.update(self.mean.tobytes())
        return digest.hexdigest()

    def save(self, folder: Path) -> str:
        (Path(folder) / HEAD_FILE).write_bytes(self.to_bytes())
        return HEAD_FILE

    @classmethod
    def load(cls, folder: Path, expect_sha256: str | None = None) -> ProjectionHead:
        path = Path(folder) / HEAD_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                head = cls(data["weight"], data["mean"])
        except (OSError, KeyError, ValueError) as exc:
            raise HeadError(f"cannot read the projection head {path}: {exc}") from exc
        if expect_sha256 is not None and head.sha256 != expect_sha256:
            raise HeadError(f"{path}: weights hash {head.sha256[:12]} differs from the manifest's {expect_sha256[:12]}")
        return head
