"""``--index auto``: the index kind for a catalog of a given size and dimension, from the measured tables in
docs/scale.md (``python -m bench index_compact``: recall@5 against exact search, p50, bytes per item).

Two sets of bands, by the dimension of the vectors the index holds:

**The device model's vectors (1280-d, a catalog not adapted)** — real vectors and synthetic ones with their
spectrum, 20k to 300k items:

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build; numpy's mat-vec is fast enough);
* up to :data:`FP16_MAX_ROWS`: HNSW over float16 vectors — the recall of float32 HNSW (0.995 both, 100k
  synthetic; 0.991 both, 20k real) at half its memory and less search time (p50 1.16 vs 2.18 ms at 100k);
* above: HNSW over 8-bit codes of the full vectors (``hnsw-sq8``), about 1.7 KB per 1280-d item: ≈ 1.2M items
  in a 2 GB function. No projection by default: every PCA size measured cost recall (384 dims: 0.87 on real
  vectors; 768 dims: 0.94), so a projection is an explicit trade (``--index-param pca=384``), not a default.
* ``ef_search`` grows with the catalog, whose near-ties the graph misses more often as it grows: 128 up to
  :data:`LARGE_ROWS` rows (64 left every HNSW kind at 0.97 on the real vectors), 256 above (at 300k and 128,
  ``hnsw-fp16`` kept 0.978 and ``hnsw-sq8`` 0.971; at 256, 0.989 and 0.982).

A message's region vectors are walked with ``ef_regions`` (:data:`REGION_EF`) up to :data:`LARGE_ROWS` rows, in
both sets of bands, where measured.

**An adapted catalog's vectors (≤ :data:`HEAD_DIM_MAX`-d: ``catalog adapt``'s projection head, 256-d)** —
the spectral set projected through a trained head, 100k, 1M and 2M items (:data:`HEAD_BANDS`), recall against
exact search in the head's space (what the adapted search computes exactly):

* up to :data:`EXACT_MAX_ROWS` rows: exact search, as above;
* ``hnsw-fp16`` (``M`` 32) above: ≈ 880 B per item in a loaded function (a fresh process holding 2M items:
  1,736 MiB, so 2M fit a 2 GB function). 8-bit codes stopped at 0.985 already at 100k (their quantization
  error, not the graph); ``M`` 16 saves 128 B per item but kept only 0.970 at 1M even at ``ef_search`` 512.
* ``ef_search`` 128 up to :data:`LARGE_ROWS` (0.990 at 100k); up to :data:`HEAD_LARGE_ROWS` a denser graph,
  ``M`` 48 (:data:`HNSW48_PARAMS`) with ``ef_search`` 144 (0.981 at 1M in 1.7-1.9 ms p50; ``M`` 32 needed 384
  for 0.984 in 2.3 ms); above, ``M`` 32 with 768 (0.986 at 2M; 512: 0.976), the kind whose 2M index fits 2 GB.
  Recall falls with the catalog's size and rises with ``ef_search``, so each band's measured recall is at its
  upper end.
* p50 on one thread of the 2-core machine, nearly idle: 1.7-1.9 ms at 1M and 6.0 ms at 2M (768).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 20_000
FP16_MAX_ROWS = 300_000
LARGE_ROWS = 100_000
HNSW_PARAMS = {"M": 32, "ef_construction": 80}
HNSW48_PARAMS = {"M": 48, "ef_construction": 80}
"""A denser graph for adapted catalogs of 100k-1M rows: at 1M, ``M`` 48 kept recall@5 0.981 at ``ef_search`` 144
in 1.7-1.9 ms p50 (two runs on a nearly idle machine), where ``M`` 32 needed 384 and 2.3 ms for 0.984; it costs
≈ 128 B more per item (1,008 B per item loaded at 1M), so 2M items would not fit 2 GB: above 1M, ``M`` 32."""
REGION_EF = 96
"""efSearch of each region's walk for a multi-region message, up to :data:`LARGE_ROWS` rows. At 100k items
(``python -m bench region_search``) 4-region messages kept recall@5 against the exact fold of 0.982 at 96 vs
0.989 at 128 on adapted 256-d vectors (a lone query at 128: 0.980), 0.995 vs 0.997 on 1280-d vectors, with
20 % fewer distance computations. Above, not measured: the regions walk with ``ef_search``."""
COMPACT_KIND = "hnsw-sq8"
HEAD_DIM_MAX = 256
"""Vectors of at most this many dimensions take :data:`HEAD_BANDS` (an adapted catalog's head space)."""
HEAD_LARGE_ROWS = 1_000_000
"""Adapted catalogs above this many rows search wider (``ef_search`` 384 kept 0.967 at 2M, 768 kept 0.986)."""


@dataclass(frozen=True)
class Band:
    max_rows: int | None
    """The band holds catalogs up to this many index rows; None: no upper bound."""
    kind: str
    params: Mapping[str, int]

    def describe(self) -> str:
        settings = ", ".join(f"{k} {v}" for k, v in self.params.items() if k != "ef_construction")
        size = "above" if self.max_rows is None else f"up to {self.max_rows:,}"
        return f"{self.kind}{f' ({settings})' if settings else ''} {size}"


FULL_BANDS = (
    Band(EXACT_MAX_ROWS, "exact", {}),
    Band(LARGE_ROWS, "hnsw-fp16", {**HNSW_PARAMS, "ef_search": 128, "ef_regions": REGION_EF}),
    Band(FP16_MAX_ROWS, "hnsw-fp16", {**HNSW_PARAMS, "ef_search": 256}),
    Band(None, COMPACT_KIND, {**HNSW_PARAMS, "ef_search": 256}),
)
HEAD_BANDS = (
    Band(EXACT_MAX_ROWS, "exact", {}),
    Band(LARGE_ROWS, "hnsw-fp16", {**HNSW_PARAMS, "ef_search": 128, "ef_regions": REGION_EF}),
    Band(HEAD_LARGE_ROWS, "hnsw-fp16", {**HNSW48_PARAMS, "ef_search": 144}),
    Band(None, "hnsw-fp16", {**HNSW_PARAMS, "ef_search": 768}),
)


def bands(dim: int) -> tuple[Band, ...]:
    """The bands for ``dim``-d index vectors."""
    return HEAD_BANDS if dim <= HEAD_DIM_MAX else FULL_BANDS


def choose(rows: int, dim: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) for ``rows`` index rows of ``dim``-d vectors."""
    for band in bands(dim):
        if band.max_rows is None or rows <= band.max_rows:
            return band.kind, dict(band.params)
    raise AssertionError("the last band has no upper bound")


def describe_bands() -> str:
    def one(table: tuple[Band, ...]) -> str:
        return ", ".join(band.describe() for band in table)

    return f"auto: above {HEAD_DIM_MAX}-d: {one(FULL_BANDS)}; up to {HEAD_DIM_MAX}-d (adapted): {one(HEAD_BANDS)}"
