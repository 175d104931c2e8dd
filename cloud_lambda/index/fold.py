"""One search over a catalog: project the query's region vectors, search the index, fold hits per item (max).

A device message may carry several region vectors of one frame (wire version 2) and an index may hold several
views per item; an item's score is its best (region, view) pair. With a projection head (an adapted catalog)
every region vector is projected first, exactly as the catalog vectors were when the index was written.

Cost: one batched index search of ``R`` queries for ``k × views`` rows each (``search_regions``: an HNSW index
may walk each region with a smaller ``ef_regions``), then a fold over ``R × k × views`` hits; an exact index
reads the matrix once for the whole batch (one matrix product).
"""

from __future__ import annotations

import numpy as np

from cloud_lambda.index.base import VectorIndex
from model.retrieval.catalog_views import aggregate_max
from model.retrieval.head import ProjectionHead


def search_items(
    index: VectorIndex,
    owners: np.ndarray,
    views_per_item: int,
    vectors: np.ndarray,
    k: int,
    head: ProjectionHead | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``vectors [R, D]`` → (scores ``[k]``, item positions ``[k]``), best first; -inf / -1 pad missing hits."""
    queries = np.asarray(vectors, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None]
    if head is not None:
        queries = head.project(queries)
    if views_per_item == 1 and len(queries) == 1:
        scores, positions = index.search(queries, k)
        return scores[0], positions[0]
    fetch = min(index.count, k * views_per_item)
    scores, positions = index.search_regions(queries, fetch) if len(queries) > 1 else index.search(queries, fetch)
    item_scores, items = aggregate_max(scores.reshape(1, -1), positions.reshape(1, -1), owners, k)
    return item_scores[0], items[0]
