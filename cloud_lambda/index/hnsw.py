"""HNSW graph index over full float32 vectors (faiss ``IndexHNSWFlat``, inner product): sub-millisecond at
100k-1M items, about ``4·dim + 8·M`` bytes per item.

Parameters M / efConstruction / efSearch are recorded in the manifest; efSearch can be raised at load
time (it only affects search) without rebuilding.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cloud_lambda.index.base import register
from cloud_lambda.index.faiss_base import FaissIndex

DEFAULTS = {"M": 32, "ef_construction": 80, "ef_search": 64}


@register
class HnswIndex(FaissIndex):
    kind = "hnsw"
    file_name = "index.hnsw.faiss"
    DEFAULTS = DEFAULTS
    SEARCH_PARAMS: ClassVar[tuple[str, ...]] = ("ef_search",)

    def _new(self, dim: int) -> Any:
        import faiss  # imported lazily: exact search needs no faiss

        index = faiss.IndexHNSWFlat(dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.params["ef_construction"])
        return index

    def _tune(self, index: Any) -> None:
        index.hnsw.efSearch = int(self.params["ef_search"])

    def set_ef_search(self, ef: int) -> None:
        self.set_search_param("ef_search", ef)
