"""``--index auto``: the index kind for a catalog of a given size, from the measured table in docs/scale.md
(``python -m bench index_compact``).

* up to :data:`EXACT_MAX_ROWS` rows: exact search (no graph to build; numpy's mat-vec is fast enough);
* up to :data:`FLAT_MAX_ROWS`: HNSW over float32 vectors (best recall; ≈ 5.4 KB/item at 1280-d);
* above: the compact kind, which keeps recall@5 ≥ 0.98 and fits 2M+ items in a 2 GB function.
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"
EXACT_MAX_ROWS = 20_000
FLAT_MAX_ROWS = 300_000
COMPACT_KIND = "hnsw-sq8"
COMPACT_PCA = 384
"""Dimensions kept by the compact kind's projection (vectors of more than twice this many dims)."""


def choose(rows: int, dim: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) for ``rows`` index rows of ``dim``-d vectors."""
    if rows <= EXACT_MAX_ROWS:
        return "exact", {}
    if rows <= FLAT_MAX_ROWS:
        return "hnsw", {"M": 32, "ef_construction": 80, "ef_search": 64}
    params: dict[str, Any] = {"M": 32, "ef_construction": 80, "ef_search": 96}
    if dim >= 2 * COMPACT_PCA:
        params["pca"] = COMPACT_PCA
    return COMPACT_KIND, params


def describe_bands() -> str:
    return (
        f"auto: exact up to {EXACT_MAX_ROWS:,} rows, hnsw up to {FLAT_MAX_ROWS:,},"
        f" {COMPACT_KIND} (pca {COMPACT_PCA} for vectors of {2 * COMPACT_PCA}+ dims) above"
    )
