"""What every faiss-backed kind shares: one faiss index object, trained on a sample, added in blocks, saved as
one file, searched one query at a time.

A kind says how to make its (untrained) faiss index and which of its parameters only affect search (those
can be changed when the index is loaded, without a rebuild). Kinds that list them in ``DEFAULTS`` take two
optional stages, stored in the same faiss file:

* ``pca``: a projection to fewer dimensions in front of the index (:mod:`cloud_lambda.index.projection`);
* ``rerank``: the index proposes ``rerank × k`` candidates, re-scored against a second, finer code of the
  full vectors (faiss ``IndexRefine``): 8-bit scalar codes (``rerank_pq`` 0, one byte a dimension) or a
  product quantizer of ``rerank_pq`` bytes.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cloud_lambda.index.base import VectorIndex, VectorIndexError

STAGE_BOUNDS = {"pca": (0, 8192), "rerank": (0, 64), "rerank_pq": (0, 8192)}
"""Bounds of the optional stages' parameters (module docstring)."""
TRAIN_SAMPLE = 200_000
"""Vectors a quantizer / PCA / k-means learns from: enough for 1280-d statistics, cheap at 1M+ items."""
ADD_BLOCK = 50_000


def check_int_params(
    kind: str, params: dict[str, Any], defaults: dict[str, int], bounds: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    unknown = set(params) - set(defaults)
    if unknown:
        raise VectorIndexError(f"unknown {kind} parameters {sorted(unknown)}; known: {sorted(defaults)}")
    merged = {**defaults, **params}
    for key, value in merged.items():
        low, high = bounds.get(key, (2, 4096))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise VectorIndexError(f"{kind} parameter {key} must be an integer in {low}..{high}, got {value!r}")
    return merged


class FaissIndex(VectorIndex):
    """Base of the faiss kinds. Subclasses set ``DEFAULTS``/``BOUNDS`` and implement ``_new`` and ``_tune``."""

    DEFAULTS: ClassVar[dict[str, int]] = {}
    BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {}
    SEARCH_PARAMS: ClassVar[tuple[str, ...]] = ()
    """Parameters that only affect search: a loader may override them from the manifest's values."""

    def __init__(self, dim: int, **params: Any) -> None:
        super().__init__(dim, **params)
        self._index: Any = None
        self._count = 0
        self._chains: dict[Any, tuple[Any, list[Any]]] = {}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        merged = check_int_params(cls.kind, params, cls.DEFAULTS, {**STAGE_BOUNDS, **cls.BOUNDS})
        pca = merged.get("pca", 0)
        if pca and pca < 8:
            raise VectorIndexError(f"{cls.kind} parameter pca must be 0 (off) or >= 8, got {pca}")
        return merged

    @abstractmethod
    def _new(self, dim: int) -> Any:
        """The untrained faiss index over ``dim``-d inputs (after the projection, when there is one)."""

    @abstractmethod
    def _tune(self, index: Any) -> None:
        """Apply the search-time parameters to the (inner) faiss index."""

    @property
    def count(self) -> int:
        return self._count

    def _inner(self) -> Any:
        """The index behind the re-ranking and the projection (the one that carries efSearch / nprobe)."""
        import faiss

        index = self._index
        if isinstance(index, faiss.IndexRefine):
            index = faiss.downcast_index(index.base_index)
        if isinstance(index, faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        return index

    def _apply_search_params(self) -> None:
        import faiss

        if isinstance(self._index, faiss.IndexRefine):
            self._index.k_factor = float(max(1, int(self.params.get("rerank", 1))))
        self._tune(self._inner())

    def _wrap_params(self, inner_params: Any) -> list[Any]:
        """``inner_params`` wrapped for the stages in front of the inner index, innermost first. Every level is
        returned: faiss's parameter objects hold plain pointers to the level below, so whoever searches with the
        outermost keeps them all alive (:meth:`_params_chain` does, as long as the index)."""
        import faiss

        chain = [inner_params]
        index = self._index
        base = faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index
        if isinstance(base, faiss.IndexPreTransform):
            pre = faiss.SearchParametersPreTransform()
            pre.index_params = chain[-1]
            chain.append(pre)
        if isinstance(index, faiss.IndexRefine):
            refine = faiss.IndexRefineSearchParameters()
            refine.k_factor = float(index.k_factor)
            refine.base_index_params = chain[-1]
            chain.append(refine)
        return chain

    def set_search_param(self, name: str, value: int) -> None:
        if name not in self.SEARCH_PARAMS:
            raise VectorIndexError(
                f"{self.kind}: {name} is not a search-time parameter ({', '.join(self.SEARCH_PARAMS)})"
            )
        self.params = self.check_params({**self.params, name: int(value)})
        self._chains.clear()  # made for the old settings: drop them rather than keep one set per value ever used
        if self._index is not None:
            self._apply_search_params()

    def _refine_codes(self) -> Any:
        """The finer code of the full vectors that candidates are re-scored with."""
        import faiss

        pq = int(self.params.get("rerank_pq", 0))
        if not pq:
            return faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        if self.dim % pq:
            raise VectorIndexError(f"{self.kind}: rerank_pq={pq} must divide the vectors' {self.dim} dims")
        return faiss.IndexPQ(self.dim, pq, 8, faiss.METRIC_INNER_PRODUCT)

    def build(self, vectors: np.ndarray) -> None:
        """Train on a sample, then add block by block: ``vectors`` may be a memory map of any float dtype
        (a 1M × 1280 catalog is 5 GB as float32; only one block is converted at a time)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"vectors must be [N, {self.dim}], got {list(vectors.shape)}")
        rows = int(vectors.shape[0])
        # An empty catalog has nothing to learn a projection from; its index is the plain (empty) one.
        pca = int(self.params.get("pca", 0)) if rows else 0
        if pca and pca >= self.dim:
            raise VectorIndexError(f"{self.kind}: pca={pca} must be below the vectors' {self.dim} dims")
        index = inner = self._new(pca or self.dim)
        sample = self._check_vectors(_sample(vectors, TRAIN_SAMPLE), "vectors")
        if pca:
            from cloud_lambda.index.projection import pca_transform, wrap

            index = wrap(pca_transform(sample, pca), inner)
        if rows and int(self.params.get("rerank", 0)):
            import faiss

            # faiss's Python layer keeps both parts alive as long as the wrapper (add_ref_in_constructor).
            index = faiss.IndexRefine(index, self._refine_codes())
        if rows and not index.is_trained:
            index.train(sample)
        del sample
        for start in range(0, rows, ADD_BLOCK):
            index.add(self._check_vectors(vectors[start : start + ADD_BLOCK], "vectors"))
        self._index = index
        self._chains.clear()  # parameter chains of the replaced index would keep it alive
        self._count = int(index.ntotal)
        self._apply_search_params()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k, None)

    def _params_chain(self, key: Any, make_inner: Callable[[], Any]) -> list[Any]:
        """The wrapped parameter chain (:meth:`_wrap_params`) for per-call setting ``key``, made once per loaded
        index and reused: making and wrapping faiss's parameter objects cost about 0.05 ms a call, a few percent of
        a message's search. Read-only to faiss, so concurrent searches may share it."""
        key = (key, tuple(sorted(self.params.items())))  # a changed setting (``rerank``: k_factor) makes new ones
        cached = self._chains.get(key)
        if cached is None or cached[0] is not self._index:
            cached = self._chains[key] = (self._index, self._wrap_params(make_inner()))
        return cached[1]

    def _search(self, queries: np.ndarray, k: int, chain: list[Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """Search with the index's own settings, or with ``chain`` (:meth:`_params_chain`: faiss
        ``SearchParameters`` of the inner index, wrapped) for this call only: the loaded index is shared, so a
        per-call setting must not touch it."""
        q = self._check_vectors(queries, "queries")
        if self._count == 0 or k <= 0:
            return (
                np.full((q.shape[0], max(k, 0)), -np.inf, dtype=np.float32),
                np.full((q.shape[0], max(k, 0)), -1, dtype=np.int64),
            )
        if chain is None:
            scores, positions = self._index.search(q, k)
        else:
            scores, positions = self._index.search(q, k, params=chain[-1])
        # faiss hands back new float32 / int64 arrays: mark missing hits in place (a 4-region message's copies
        # cost more than the marking on a small result).
        missing = positions < 0
        if missing.any():
            scores[missing] = -np.inf
        return scores.astype(np.float32, copy=False), positions.astype(np.int64, copy=False)

    def save(self, folder: Path) -> str:
        import faiss

        if self._index is None:
            self._index = self._new(self.dim)
        faiss.write_index(self._index, str(folder / self.file_name))
        return self.file_name

    @classmethod
    def load(cls, folder: Path, dim: int, params: dict[str, Any]) -> FaissIndex:
        import faiss

        path = folder / cls.file_name
        index = cls(dim, **params)
        try:
            loaded = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise VectorIndexError(f"cannot read {cls.kind} index {path}: {str(exc).splitlines()[0]}") from exc
        if loaded.d != dim:
            raise VectorIndexError(f"{cls.kind} index {path} has dim {loaded.d}, manifest says {dim}")
        index._index = loaded
        index._count = int(loaded.ntotal)
        index._apply_search_params()
        return index


def _sample(vectors: np.ndarray, limit: int) -> np.ndarray:
    if vectors.shape[0] <= limit:
        return vectors
    # A fixed seed: the same catalog gives the same quantizer, so rebuilds are reproducible.
    rows = np.sort(np.random.default_rng(0).choice(vectors.shape[0], limit, replace=False))
    return np.ascontiguousarray(vectors[rows])
