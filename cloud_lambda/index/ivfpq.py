"""Inverted lists of product-quantized codes (faiss ``IndexIVFPQ``, inner product): ``pq_m`` bytes per item
plus an 8-byte id, the smallest kind; optionally after a ``pca`` projection and re-ranked (``rerank``
k-factor) against finer codes of the full vectors (:mod:`cloud_lambda.index.faiss_base`).

``nlist`` 0 picks about 4·√N lists (at least 39 training vectors each, faiss's own minimum); ``nprobe``
lists are scanned per query (search-time).
"""

from __future__ import annotations

import math
from typing import Any

from cloud_lambda.index.base import VectorIndexError, register
from cloud_lambda.index.faiss_base import FaissIndex

DEFAULTS = {"nlist": 0, "pq_m": 64, "nbits": 8, "nprobe": 32, "pca": 0, "rerank": 0, "rerank_pq": 0}
BOUNDS = {"nlist": (0, 1 << 20), "pq_m": (1, 4096), "nbits": (4, 12), "nprobe": (1, 1 << 20)}


def auto_nlist(rows: int) -> int:
    return max(1, min(int(4 * math.sqrt(max(rows, 1))), rows // 39 or 1, 65_536))


@register
class IvfPqIndex(FaissIndex):
    kind = "ivfpq"
    file_name = "index.ivfpq.faiss"
    DEFAULTS = DEFAULTS
    BOUNDS = BOUNDS
    SEARCH_PARAMS = ("nprobe", "rerank")

    def __init__(self, dim: int, **params: Any) -> None:
        super().__init__(dim, **params)
        self._rows_hint = 0

    def build(self, vectors: Any) -> None:
        rows, codes = len(vectors), 2 ** int(self.params["nbits"])
        if 0 < rows < codes:
            raise VectorIndexError(
                f"ivfpq with nbits={self.params['nbits']} learns {codes} codes per sub-vector and needs at least that"
                f" many rows, got {rows}: use hnsw or exact for a catalog this small"
            )
        self._rows_hint = rows
        super().build(vectors)

    def _new(self, dim: int) -> Any:
        import faiss

        m = int(self.params["pq_m"])
        if dim % m:
            raise VectorIndexError(f"ivfpq: pq_m={m} must divide the indexed dimension {dim}")
        nlist = int(self.params["nlist"]) or auto_nlist(self._rows_hint)
        quantizer = faiss.IndexFlatIP(dim)
        # faiss's Python layer keeps the quantizer alive as long as the index (add_ref_in_constructor).
        return faiss.IndexIVFPQ(quantizer, dim, nlist, m, int(self.params["nbits"]), faiss.METRIC_INNER_PRODUCT)

    def _tune(self, index: Any) -> None:
        index.nprobe = int(self.params["nprobe"])
