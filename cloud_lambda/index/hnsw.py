"""HNSW graph index (faiss ``IndexHNSWFlat``, inner product): sub-millisecond at 100k-1M items.

Parameters M / efConstruction / efSearch are recorded in the manifest; efSearch can be raised at load
time (it only affects search) without rebuilding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cloud_lambda.index.base import VectorIndex, VectorIndexError, register

DEFAULTS = {"M": 32, "ef_construction": 80, "ef_search": 64}


@register
class HnswIndex(VectorIndex):
    kind = "hnsw"
    file_name = "index.hnsw.faiss"

    def __init__(self, dim: int, **params: Any) -> None:
        super().__init__(dim, **params)
        self._index: Any = self._new()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise VectorIndexError(f"unknown hnsw parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        merged = {**DEFAULTS, **params}
        for key, value in merged.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 4096:
                raise VectorIndexError(f"hnsw parameter {key} must be an integer in 2..4096, got {value!r}")
        return merged

    def _new(self) -> Any:
        import faiss  # imported lazily: exact search needs no faiss

        index = faiss.IndexHNSWFlat(self.dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.params["ef_construction"])
        index.hnsw.efSearch = int(self.params["ef_search"])
        return index

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    def set_ef_search(self, ef: int) -> None:
        self.params["ef_search"] = int(ef)
        self._index.hnsw.efSearch = int(ef)

    def build(self, vectors: np.ndarray) -> None:
        arr = self._check_vectors(vectors, "vectors")
        self._index = self._new()
        if arr.shape[0]:
            self._index.add(arr)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._check_vectors(queries, "queries")
        if self.count == 0 or k <= 0:
            return (
                np.full((q.shape[0], max(k, 0)), -np.inf, dtype=np.float32),
                np.full((q.shape[0], max(k, 0)), -1, dtype=np.int64),
            )
        scores, positions = self._index.search(q, k)
        scores = np.where(positions < 0, -np.inf, scores).astype(np.float32)
        return scores, positions.astype(np.int64)

    def save(self, folder: Path) -> str:
        import faiss

        faiss.write_index(self._index, str(folder / self.file_name))
        return self.file_name

    @classmethod
    def load(cls, folder: Path, dim: int, params: dict[str, Any]) -> HnswIndex:
        import faiss

        path = folder / cls.file_name
        index = cls(dim, **params)
        try:
            index._index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise VectorIndexError(f"cannot read hnsw index {path}: {str(exc).splitlines()[0]}") from exc
        if index._index.d != dim:
            raise VectorIndexError(f"hnsw index {path} has dim {index._index.d}, manifest says {dim}")
        index._index.hnsw.efSearch = int(index.params["ef_search"])
        return index
