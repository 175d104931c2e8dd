"""The index interface: build from normalized vectors, search by inner product, save/load as files.

The kind and its parameters are recorded in the catalog manifest beside the index file, so a loader
rebuilds exactly the index that was measured.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from model.contracts.errors import VisualSearchError

INDEX_KINDS: dict[str, type[VectorIndex]] = {}
_PLUGINS = {
    "exact": "cloud_lambda.index.exact",
    "hnsw": "cloud_lambda.index.hnsw",
    "hnsw-fp16": "cloud_lambda.index.hnsw_sq",
    "hnsw-sq8": "cloud_lambda.index.hnsw_sq",
    "ivfpq": "cloud_lambda.index.ivfpq",
}


class VectorIndexError(VisualSearchError, ValueError):
    """Wrong vectors for this index, unknown kind, or an unreadable index file."""


class VectorIndex(ABC):
    """Inner-product k-NN over L2-normalized float32 vectors (inner product = cosine similarity)."""

    kind: ClassVar[str]
    file_name: ClassVar[str]

    def __init__(self, dim: int, **params: Any) -> None:
        if dim <= 0:
            raise VectorIndexError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.params = self.check_params(params)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise VectorIndexError(f"index '{cls.kind}' takes no parameters, got {sorted(params)}")
        return {}

    @property
    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def build(self, vectors: np.ndarray) -> None:
        """Replace the contents with ``vectors`` (float32 ``[N, dim]``, row i → item i)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``[Q, dim]`` → (scores ``[Q, k]`` descending, positions ``[Q, k]``; -1 where fewer than k items)."""

    def search_regions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``[R, dim]`` region vectors of one message, as :meth:`search`. A kind may spend less effort per
        region than on a lone query: the fold keeps each item's best region, so what one region's search
        misses another usually finds (an HNSW index's ``ef_regions``, :mod:`cloud_lambda.index.hnsw`)."""
        return self.search(queries, k)

    @abstractmethod
    def save(self, folder: Path) -> str:
        """Write the index file into ``folder``; return its file name."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, dim: int, params: dict[str, Any]) -> VectorIndex: ...

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params), "file": self.file_name}

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise VectorIndexError(f"{what} must be [N, {self.dim}], got {list(arr.shape)}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise VectorIndexError(f"{what} contain NaN or infinity")
        return arr


def _load_plugins() -> None:
    for module in _PLUGINS.values():
        importlib.import_module(module)


def register(cls: type[VectorIndex]) -> type[VectorIndex]:
    INDEX_KINDS[cls.kind] = cls
    return cls


def _kind(kind: str) -> type[VectorIndex]:
    if kind not in _PLUGINS:
        raise VectorIndexError(f"unknown index kind '{kind}'; known: {', '.join(sorted(_PLUGINS))}")
    importlib.import_module(_PLUGINS[kind])
    return INDEX_KINDS[kind]


def kinds() -> list[str]:
    """Every index kind (for option choices), without importing faiss."""
    return list(_PLUGINS)


def create_index(kind: str, dim: int, **params: Any) -> VectorIndex:
    return _kind(kind)(dim, **params)


def load_index(folder: str | Path, kind: str, dim: int, params: dict[str, Any] | None = None) -> VectorIndex:
    return _kind(kind).load(Path(folder), dim, dict(params or {}))
