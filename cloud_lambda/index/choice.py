"""``--index auto``: the index kind for a catalog of a given size and dimension, from the measured tables in
docs/scale.md (``python -m bench index_compact``: recall@5 against exact search, p50, bytes per item).

Two sets of bands, by the dimension of the vectors the index holds:

**The device model's vectors (1280-d, a catalog not adapted)** — real vectors and synthetic ones with their
spectrum, 5k to 300k items:

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build). Above, a graph: exact search reads every
  row, 5 KB a 1280-d item per query on one thread — real vectors, one camera view at a time: 3.4 ms exact vs
  0.41 ms at recall@5 0.990 through the band below at 10k, 6.5 vs 0.43 ms at 0.987 at 20k (0.998 at 5k); a
  4-region spectral message 11.0 vs 2.0 ms at 10k (recall against the exact fold 1.000, ``ef_regions`` 96),
  19.0 vs 2.9 ms at 20k (0.997). Until 2026-11-30 the band went to 20k on an older figure (0.17 ms at 10k);
* up to :data:`FP16_MAX_ROWS`: HNSW over float16 vectors — the recall of float32 HNSW (0.995 both, 100k
  synthetic; 0.991 both, 20k real) at half its memory and less search time (p50 1.16 vs 2.18 ms at 100k);
* above: HNSW over 8-bit codes of the full vectors (``hnsw-sq8``), about 1.7 KB per 1280-d item: ≈ 1.2M items
  in a 2 GB function. No projection by default: every PCA size measured cost recall (384 dims: 0.87 on real
  vectors; 768 dims: 0.94), so a projection is an explicit trade (``--index-param pca=384``), not a default.
* ``ef_search`` grows with the catalog, whose near-ties the graph misses more often as it grows: 128 up to
  :data:`LARGE_ROWS` rows (64 left every HNSW kind at 0.97 on the real vectors), 256 above (at 300k and 128,
  ``hnsw-fp16`` kept 0.978 and ``hnsw-sq8`` 0.971; at 256, 0.989 and 0.982).

A message's region vectors are walked with ``ef_regions`` up to :data:`LARGE_ROWS` rows, in both sets of bands,
where measured (:data:`REGION_EF`, :data:`HEAD_REGION_EF`).

**An adapted catalog's vectors (≤ :data:`HEAD_DIM_MAX`-d: ``catalog adapt``'s projection head, 256-d)** —
the spectral set projected through a trained head, 100k, 1M and 2M items (:data:`HEAD_BANDS`), recall against
exact search in the head's space (what the adapted search computes exactly):

* up to :data:`EXACT_MAX_ROWS` rows: exact search. Its cost is reading the whole matrix: a 4-region message
  took 2.4 ms exact at 10k against 1.1 ms through ``M`` 48 below at recall@5 0.999 (and 1.0 ms vs 0.6 ms at
  2k, 0.64 vs 0.46 at 1k);
* ``hnsw-fp16`` above: ≈ 880 B per item (``M`` 32) in a loaded function (a fresh process holding 2M items:
  1,736 MiB, so 2M fit a 2 GB function). 8-bit codes stopped at 0.985 already at 100k (their quantization
  error, not the graph); ``M`` 16 saves 128 B per item but kept only 0.970 at 1M even at ``ef_search`` 512.
* up to :data:`HEAD_LARGE_ROWS` a denser graph, ``M`` 48 (:data:`HNSW48_PARAMS`): ``ef_search`` 96 and
  ``ef_regions`` :data:`HEAD_REGION_EF` up to :data:`LARGE_ROWS` (lone queries 0.985-0.987 at 100k where ``M`` 32 at
  128 kept 0.980), ``ef_search`` 144 above (0.981 at 1M in 1.7-1.9 ms p50; ``M`` 32 needed 384 for 0.984 in
  2.3 ms); above 1M, ``M`` 32 with 768 (0.986 at 2M; 512: 0.976), the kind whose 2M index fits 2 GB. Recall
  falls with the catalog's size and rises with ``ef_search``, so each band's measured recall is at its upper end.
* p50 on one thread of the 2-core machine, nearly idle: 1.7-1.9 ms at 1M and 6.0 ms at 2M (768).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 1_000
"""Catalogs up to this many rows are searched exactly, in either space (module docstring: a graph is faster above)."""
FP16_MAX_ROWS = 300_000
LARGE_ROWS = 100_000
HNSW_PARAMS = {"M": 32, "ef_construction": 80}
HNSW48_PARAMS = {"M": 48, "ef_construction": 80}
"""A denser graph for adapted catalogs of 1k-1M rows: at 1M, ``M`` 48 kept recall@5 0.981 at ``ef_search`` 144
in 1.7-1.9 ms p50 (two runs on a nearly idle machine), where ``M`` 32 needed 384 and 2.3 ms for 0.984; at 100k it
walks a 4-region message's regions with :data:`HEAD_REGION_EF`. It costs ≈ 128 B more
per item (1,008 B per item loaded at 1M), so 2M items would not fit 2 GB: above 1M, ``M`` 32."""
REGION_EF = 96
"""efSearch of each region's walk for a multi-region message in the model's 1280-d space, up to :data:`LARGE_ROWS`
rows. At 100k items (``python -m bench region_search``) 4-region messages kept recall@5 against the exact fold of
0.995 at 96 vs 0.997 at 128, with 20 % fewer distance computations (on an ``M`` 32 graph of adapted 256-d vectors:
0.982 vs 0.989; those now take :data:`HEAD_REGION_EF`). Above, not measured: the regions walk with ``ef_search``."""
HEAD_REGION_EF = 56
"""``ef_regions`` of an adapted catalog's ``M`` 48 graph up to :data:`LARGE_ROWS` rows. 4-region messages at 100k,
400 messages each: recall@5 against the exact fold, distance computations per message, p50 ms of the whole
search (head projection, walks, fold; variants interleaved message by message, one thread, load 2.3-2.4), on
spectral vectors through the trained head and isotropic ones through a random orthonormal map; messages held
out from the choice (the tuning messages gave 0.983 / 0.990 at 48 / 64 on the spectral set):

======================  ======================  ======================
graph, ``ef_regions``   spectral                isotropic
======================  ======================  ======================
``M`` 32, 96 (before)   0.983, 9,423            1.000, 11,950
``M`` 48, 48            0.977, 9,342, 1.89      1.000, 6,863, 1.22
**``M`` 48, 56**        **0.983, 10,499, 2.07** **1.000, 7,978, 1.37**
``M`` 48, 64            0.988, 11,611, 2.25     1.000, 9,392, 1.51
======================  ======================  ======================

On spectral vectors ``M`` 48 needs as many distances as ``M`` 32 for a recall (0.98 costs ≈ 10k a message), on
isotropic ones about two thirds. 48 left the held-out messages under 0.98; 64 costs 0.2 ms more. Also measured
and not taken: float32 graphs (the same distances, slower), ``M`` 64 (no cheaper at equal recall), 8-bit codes
with float32 re-ranking (+0.003 recall, no faster). At 10k ``M`` 48 at 48-64 kept 0.997-1.000 (``python -m
bench region_search``, docs/match-quality.md)."""
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
    Band(LARGE_ROWS, "hnsw-fp16", {**HNSW48_PARAMS, "ef_search": 96, "ef_regions": HEAD_REGION_EF}),
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
