"""Exact and HNSW indexes behind one interface: agreement, save/load, parameters, edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud_lambda.index import VectorIndexError, create_index, load_index


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_top_k_matches_brute_force():
    base, queries = unit(500, 32, 0), unit(20, 32, 1)
    index = create_index("exact", 32)
    index.build(base)
    scores, positions = index.search(queries, 5)
    sims = queries @ base.T
    np.testing.assert_array_equal(positions, np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(sims, axis=1)[:, ::-1][:, :5], rtol=1e-5)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_save_load_and_recall(kind: str, tmp_path: Path):
    base = unit(2000, 48, 2)
    queries = base[:50] + 0.05 * unit(50, 48, 3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    params = {"M": 16, "ef_search": 64} if kind == "hnsw" else {}
    index = create_index(kind, 48, **params)
    index.build(base)
    name = index.save(tmp_path)
    assert (tmp_path / name).exists() and index.describe()["file"] == name
    loaded = load_index(tmp_path, kind, 48, index.params)
    assert loaded.count == 2000 and loaded.params == index.params
    _, got = loaded.search(queries, 5)
    exact = create_index("exact", 48)
    exact.build(base)
    _, truth = exact.search(queries, 5)
    recall = np.mean([len(set(g) & set(t)) / 5 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95
    assert (got[:, 0] == np.arange(50)).mean() >= 0.95


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_fewer_items_than_k_and_empty(kind: str):
    index = create_index(kind, 8)
    scores, positions = index.search(unit(1, 8, 0), 3)
    assert (positions == -1).all() and np.isneginf(scores).all()
    index.build(unit(2, 8, 1))
    scores, positions = index.search(unit(1, 8, 2), 5)
    assert sorted(positions[0, :2].tolist()) == [0, 1] and (positions[0, 2:] == -1).all()


def test_bad_input_and_params():
    with pytest.raises(VectorIndexError, match="unknown index kind"):
        create_index("ivfpq", 8)
    with pytest.raises(VectorIndexError, match="unknown hnsw parameters"):
        create_index("hnsw", 8, m=3)
    with pytest.raises(VectorIndexError, match=r"2\.\.4096"):
        create_index("hnsw", 8, M=1)
    with pytest.raises(VectorIndexError, match="takes no parameters"):
        create_index("exact", 8, M=16)
    index = create_index("exact", 8)
    with pytest.raises(VectorIndexError, match=r"\[N, 8\]"):
        index.build(unit(3, 9, 0))
    with pytest.raises(VectorIndexError, match="NaN"):
        index.build(np.full((2, 8), np.nan, np.float32))
