"""``--index auto``: the index kind for a catalog of a given size, from the measured table in docs/scale.md
(``python -m bench index_compact``: recall@5 against exact search, p50, bytes per item, on the shipped model's
real vectors and on synthetic vectors with their spectrum).

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build; numpy's mat-vec is fast enough);
* up to :data:`FP16_MAX_ROWS`: HNSW over float16 vectors — the recall of float32 HNSW (0.995 both, 100k
  synthetic; 0.991 both, 20k real) at half its memory and less search time (p50 1.16 vs 2.18 ms at 100k);
* above: HNSW over 8-bit codes of the full vectors (``hnsw-sq8``), about 1.6 KB per 1280-d item. No projection
  by default: every PCA size measured cost recall (384 dims: 0.87 on real vectors; 768 dims: 0.94), so a
  projection is an explicit trade (``--index-param pca=384``: half the memory), not a default.

A message's region vectors are walked with ``ef_regions`` (:data:`REGION_EF`), where measured.
``ef_search`` grows with the catalog, whose near-ties the graph misses more often as it grows: 128 up to
:data:`LARGE_ROWS` rows (64 left every HNSW kind at 0.97 on the real vectors), 256 above (at 300k and 128,
``hnsw-fp16`` kept 0.978 and ``hnsw-sq8`` 0.971; at 256, 0.989 and 0.982).
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 20_000
FP16_MAX_ROWS = 300_000
LARGE_ROWS = 100_000
HNSW_PARAMS = {"M": 32, "ef_construction": 80}
REGION_EF = 96
"""efSearch of each region's walk for a multi-region message, up to :data:`LARGE_ROWS` rows. At 100k items
(``python -m bench region_search``) 4-region messages kept recall@5 against the exact fold of 0.982 at 96 vs
0.989 at 128 on adapted 256-d vectors (a lone query at 128: 0.980), 0.995 vs 0.997 on 1280-d vectors, with
20 % fewer distance computations. Above, not measured: the regions walk with ``ef_search``."""
COMPACT_KIND = "hnsw-sq8"


def choose(rows: int, dim: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) for ``rows`` index rows of ``dim``-d vectors."""
    if rows <= EXACT_MAX_ROWS:
        return "exact", {}
    params = {**HNSW_PARAMS, "ef_search": 128 if rows <= LARGE_ROWS else 256}
    if rows <= LARGE_ROWS:
        params["ef_regions"] = REGION_EF
    return ("hnsw-fp16" if rows <= FP16_MAX_ROWS else COMPACT_KIND), params


def describe_bands() -> str:
    return (
        f"auto: exact up to {EXACT_MAX_ROWS:,} rows, hnsw-fp16 up to {FP16_MAX_ROWS:,}, {COMPACT_KIND} above;"
        f" ef_search 128 up to {LARGE_ROWS:,}, 256 above"
    )
