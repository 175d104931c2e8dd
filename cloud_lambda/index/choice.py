"""``--index auto``: the index kind for a catalog of a given size, from the measured table in docs/scale.md
(``python -m bench index_compact``: recall@5 against exact search, p50, bytes per item, on the shipped model's
real vectors and on synthetic vectors with their spectrum).

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build; numpy's mat-vec is fast enough);
* up to :data:`FP16_MAX_ROWS`: HNSW over float16 vectors — the recall of float32 HNSW (0.995 both, 100k
  synthetic; 0.991 both, 20k real) at half its memory and about half its search time;
* above: HNSW over 8-bit codes of the full vectors (``hnsw-sq8``), about 1.6 KB per 1280-d item. No projection
  by default: every PCA size measured cost recall (384 dims: 0.87 on real vectors; 768 dims: 0.94), so a
  projection is an explicit trade (``--index-param pca=384``: half the memory), not a default.

``ef_search``: 128 for ``hnsw-fp16`` (on the real vectors 64 left every HNSW kind at 0.97); 256 for ``hnsw-sq8``,
whose recall falls with the catalog's size (at 128: 0.987 at 100k, 0.971 at 300k; 256 gives 0.982 at 300k).
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 20_000
FP16_MAX_ROWS = 300_000
HNSW_PARAMS = {"M": 32, "ef_construction": 80, "ef_search": 128}
COMPACT_KIND = "hnsw-sq8"
COMPACT_EF_SEARCH = 256


def choose(rows: int, dim: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) for ``rows`` index rows of ``dim``-d vectors."""
    if rows <= EXACT_MAX_ROWS:
        return "exact", {}
    if rows <= FP16_MAX_ROWS:
        return "hnsw-fp16", dict(HNSW_PARAMS)
    return COMPACT_KIND, {**HNSW_PARAMS, "ef_search": COMPACT_EF_SEARCH}


def describe_bands() -> str:
    return f"auto: exact up to {EXACT_MAX_ROWS:,} rows, hnsw-fp16 up to {FP16_MAX_ROWS:,}, {COMPACT_KIND} above"
