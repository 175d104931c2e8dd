"""``--index auto``: the index kind for a catalog of a given size, from the measured table in docs/scale.md
(``python -m bench index_compact``: recall@5 against exact search, p50, bytes per item, on the shipped model's
real vectors and on synthetic vectors with their spectrum).

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build; numpy's mat-vec is fast enough);
* up to :data:`FP16_MAX_ROWS`: HNSW over float16 vectors — the recall of float32 HNSW (both 0.998 at 20k and
  100k) at half its memory, and no slower;
* above: HNSW over 8-bit codes of the full vectors (``hnsw-sq8``): recall@5 ≈ 0.99, about 1.6 KB per 1280-d
  item. No projection by default: on vectors with the real model's spectrum every PCA size measured cost
  recall (384 dims: 0.95; even 768 dims caps exhaustive search at 0.98 before any graph loss), so a
  projection is an explicit trade (``--index-param pca=384``: 3× smaller, recall ≈ 0.95), not a default.
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 20_000
FP16_MAX_ROWS = 300_000
HNSW_PARAMS = {"M": 32, "ef_construction": 80, "ef_search": 64}
COMPACT_KIND = "hnsw-sq8"


def choose(rows: int, dim: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) for ``rows`` index rows of ``dim``-d vectors."""
    if rows <= EXACT_MAX_ROWS:
        return "exact", {}
    if rows <= FP16_MAX_ROWS:
        return "hnsw-fp16", dict(HNSW_PARAMS)
    return COMPACT_KIND, dict(HNSW_PARAMS)


def describe_bands() -> str:
    return f"auto: exact up to {EXACT_MAX_ROWS:,} rows, hnsw-fp16 up to {FP16_MAX_ROWS:,}, {COMPACT_KIND} above"
