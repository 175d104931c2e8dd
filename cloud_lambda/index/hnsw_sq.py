"""HNSW over scalar-quantized vectors (faiss ``IndexHNSWSQ``): the graph of :mod:`hnsw`, but each vector
stored as float16 (``hnsw-fp16``, 2 bytes a dimension) or 8-bit codes with a learned range per dimension
(``hnsw-sq8``, 1 byte a dimension), optionally after a projection to ``pca`` dimensions learned on the
catalog and with re-ranking against finer codes of the full vectors (``rerank``, ``rerank_pq``: see
:mod:`cloud_lambda.index.faiss_base`).

Bytes per item ≈ ``code_size + 8·M`` (graph links, int32, twice M on the base layer) + a few for levels,
+ the re-ranking code.
"""

from __future__ import annotations

from typing import Any

from cloud_lambda.index.base import register
from cloud_lambda.index.hnsw import HnswIndex

DEFAULTS = {"M": 32, "ef_construction": 80, "ef_search": 64, "ef_regions": 0, "pca": 0, "rerank": 0, "rerank_pq": 0}


class _HnswSq(HnswIndex):
    """The HNSW index with quantized storage: only the faiss index it builds differs (efSearch tuned alike)."""

    DEFAULTS = DEFAULTS
    SEARCH_PARAMS = ("ef_search", "ef_regions", "rerank")
    qtype: str

    def _new(self, dim: int) -> Any:
        import faiss

        qtype = getattr(faiss.ScalarQuantizer, self.qtype)
        index = faiss.IndexHNSWSQ(dim, qtype, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.params["ef_construction"])
        return index


@register
class HnswSq8Index(_HnswSq):
    kind = "hnsw-sq8"
    file_name = "index.hnsw-sq8.faiss"
    qtype = "QT_8bit"


@register
class HnswFp16Index(_HnswSq):
    kind = "hnsw-fp16"
    file_name = "index.hnsw-fp16.faiss"
    qtype = "QT_fp16"
