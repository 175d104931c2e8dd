"""One message's search: its region vectors' hits folded per item with max, best first — the same items and
scores as the catalog-side fold (``aggregate_max``), ties to the lower item, missing hits padded."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_lambda.index import create_index
from cloud_lambda.index.fold import fold_max, search_items
from model.retrieval.catalog_views import aggregate_max


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(40))
def test_the_message_fold_agrees_with_the_catalog_fold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    regions, per_region, k = int(rng.integers(1, 5)), int(rng.integers(1, 12)), int(rng.integers(1, 8))
    owners = rng.integers(0, 6, 30)  # several views per item
    positions = rng.integers(-1, 30, (regions, per_region))
    scores = np.round(rng.standard_normal((regions, per_region)), 1).astype(np.float32)  # ties on purpose
    scores[positions < 0] = -np.inf
    want_scores, want_items = aggregate_max(scores.reshape(1, -1), positions.reshape(1, -1), owners, k)
    got_scores, got_items = fold_max(scores, positions, owners, k)
    np.testing.assert_array_equal(got_items, want_items[0])
    np.testing.assert_array_equal(got_scores, want_scores[0])


def test_each_item_once_with_its_best_hit_ties_to_the_lower_item() -> None:
    scores = np.array([[0.9, 0.5, 0.4], [0.7, 0.5, -np.inf]], np.float32)
    positions = np.array([[4, 1, 0], [2, 3, -1]])
    owners = np.array([0, 1, 1, 2, 0])  # rows 4 and 0 are views of item 0; 1 and 2 of item 1
    scores_out, items = fold_max(scores, positions, owners, 4)
    assert items.tolist() == [0, 1, 2, -1]
    np.testing.assert_array_equal(scores_out, np.array([0.9, 0.7, 0.5, -np.inf], np.float32))
    _, tied = fold_max(np.array([[0.5, 0.5]], np.float32), np.array([[3, 1]]), owners, 2)
    assert tied.tolist() == [1, 2]


def test_a_message_finds_the_item_its_best_region_sees() -> None:
    base = unit(600, 24, 0)
    regions = np.stack([unit(1, 24, 1)[0], base[17] + 0.02 * unit(1, 24, 2)[0]])  # one region sees item 17
    regions /= np.linalg.norm(regions, axis=1, keepdims=True)
    for kind, params in (("exact", {}), ("hnsw-fp16", {"M": 16, "ef_search": 64, "ef_regions": 16})):
        index = create_index(kind, 24, **params)
        index.build(base)
        scores, items = search_items(index, np.arange(600), 1, regions, 3)
        assert items[0] == 17 and len(set(items.tolist())) == 3, kind
        assert scores[0] == pytest.approx(float(regions[1] @ base[17]), abs=2e-3)  # float16 codes


def test_a_catalog_smaller_than_k_pads_the_message_result() -> None:
    index = create_index("hnsw-fp16", 24, M=16, ef_regions=16)
    index.build(unit(3, 24, 3))
    scores, items = search_items(index, np.arange(3), 1, unit(4, 24, 4), 5)
    assert sorted(items[:3].tolist()) == [0, 1, 2] and items[3:].tolist() == [-1, -1]
    assert np.all(np.isfinite(scores[:3])) and np.all(scores[3:] == -np.inf)
