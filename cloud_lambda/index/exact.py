"""Exact search: one float32 mat-vec and an argpartition (performance.md: 0.17 ms at 10k, 4.6 ms at 100k).

numpy beats faiss flat for single queries (faiss stays off BLAS for small query batches), so this is
the exact backend; its file is the vectors matrix itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cloud_lambda.index.base import VectorIndex, VectorIndexError, register


@register
class ExactIndex(VectorIndex):
    kind = "exact"
    file_name = "index.exact.npy"

    def __init__(self, dim: int, **params: Any) -> None:
        super().__init__(dim, **params)
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    @property
    def count(self) -> int:
        return int(self._vectors.shape[0])

    def build(self, vectors: np.ndarray) -> None:
        self._vectors = self._check_vectors(vectors, "vectors")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._check_vectors(queries, "queries")
        n = self.count
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        positions = np.full((q.shape[0], k), -1, dtype=np.int64)
        if n == 0 or k <= 0:
            return scores, positions
        sims = q @ self._vectors.T
        kk = min(k, n)
        if kk < n:
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            top = np.broadcast_to(np.arange(n), (q.shape[0], n))
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        positions[:, :kk] = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
        return scores, positions

    def save(self, folder: Path) -> str:
        np.save(folder / self.file_name, self._vectors)
        return self.file_name

    @classmethod
    def load(cls, folder: Path, dim: int, params: dict[str, Any]) -> ExactIndex:
        path = folder / cls.file_name
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise VectorIndexError(f"cannot read exact index {path}: {exc}") from exc
        index = cls(dim, **params)
        index.build(vectors)
        return index
