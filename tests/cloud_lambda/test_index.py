"""Every index kind behind one interface: agreement with exact search, save/load, parameters, edge cases."""

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


PARAMS = {
    "exact": {},
    "hnsw": {"M": 16, "ef_search": 64},
    "hnsw-fp16": {"M": 16},
    "hnsw-sq8": {"M": 16},
    "ivfpq": {"nlist": 16, "nprobe": 16, "pq_m": 16, "rerank": 8},  # all lists: the codes + re-rank decide
}


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_save_load_and_recall(kind: str, tmp_path: Path):
    base = unit(2000, 48, 2)
    queries = base[:50] + 0.05 * unit(50, 48, 3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = create_index(kind, 48, **PARAMS[kind])
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


@pytest.mark.parametrize("kind", ["exact", "hnsw", "hnsw-fp16", "hnsw-sq8"])
def test_fewer_items_than_k_and_empty(kind: str):
    index = create_index(kind, 8)
    scores, positions = index.search(unit(1, 8, 0), 3)
    assert (positions == -1).all() and np.isneginf(scores).all()
    index.build(unit(2, 8, 1))
    scores, positions = index.search(unit(1, 8, 2), 5)
    assert sorted(positions[0, :2].tolist()) == [0, 1] and (positions[0, 2:] == -1).all()


def test_bad_input_and_params():
    with pytest.raises(VectorIndexError, match="unknown index kind"):
        create_index("annoy", 8)
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


def test_empty_compact_indexes_save_and_load(tmp_path: Path):
    for kind, params in (("hnsw-sq8", {"pca": 16}), ("ivfpq", {"pq_m": 4})):
        index = create_index(kind, 32, **params)
        index.build(np.zeros((0, 32), np.float32))
        index.save(tmp_path)
        loaded = load_index(tmp_path, kind, 32, index.params)
        scores, positions = loaded.search(unit(1, 32, 0), 3)
        assert loaded.count == 0 and (positions == -1).all() and np.isneginf(scores).all()


def test_pca_keeps_the_neighbours_of_low_rank_vectors(tmp_path: Path):
    """Vectors that live in 12 of 64 dimensions (plus a shared mean, as CNN descriptors have) lose nothing in a
    16-d projection: the uncentred principal directions keep every inner product, the mean term included."""
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.standard_normal((64, 12)))[0].T
    base = rng.standard_normal((3000, 12)) @ basis + 3.0 * basis[0]
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    queries = base[:40] + 0.02 * (rng.standard_normal((40, 12)) @ basis).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = create_index("hnsw-fp16", 64, M=16, pca=16)
    index.build(base)
    index.save(tmp_path)
    loaded = load_index(tmp_path, "hnsw-fp16", 64, index.params)
    exact = create_index("exact", 64)
    exact.build(base)
    truth_scores, truth = exact.search(queries, 5)
    scores, got = loaded.search(queries, 5)
    assert np.mean([len(set(g) & set(t)) / 5 for g, t in zip(got, truth, strict=True)]) >= 0.98
    np.testing.assert_allclose(scores, truth_scores, atol=2e-3)  # cosine scores, not shifted by a centring


def test_compact_parameters_are_checked():
    with pytest.raises(VectorIndexError, match="pca must be 0"):
        create_index("hnsw-sq8", 64, pca=4)
    with pytest.raises(VectorIndexError, match="below the vectors' 16 dims"):
        create_index("hnsw-sq8", 16, pca=16).build(unit(300, 16, 0))
    with pytest.raises(VectorIndexError, match="pq_m=5 must divide"):
        create_index("ivfpq", 16, pq_m=5).build(unit(300, 16, 0))
    with pytest.raises(VectorIndexError, match="at least that many rows, got 10"):
        create_index("ivfpq", 16, pq_m=4).build(unit(10, 16, 0))
    with pytest.raises(VectorIndexError, match="not a search-time parameter"):
        create_index("hnsw-sq8", 16).set_search_param("M", 8)  # type: ignore[attr-defined]


def test_reranking_restores_what_the_projection_loses(tmp_path: Path):
    """A 12-d projection of 48-d vectors with a decaying spectrum misorders near neighbours; re-scoring 8·k of
    its candidates with 8-bit codes of the full vectors gives the exact ones back (after a save/load); a 24-byte
    PQ code (2 dims a byte) recovers part of it."""
    rng = np.random.default_rng(6)
    decay = 0.93 ** np.arange(48)
    base = rng.standard_normal((3000, 48)) * decay
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    queries = (base[:60] + 0.1 * rng.standard_normal((60, 48)) * decay).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = create_index("exact", 48)
    exact.build(base)
    _, truth = exact.search(queries, 5)

    def recall(kind_params: dict) -> float:
        index = create_index("hnsw-sq8", 48, M=16, pca=12, **kind_params)
        index.build(base)
        folder = tmp_path / str(sorted(kind_params.items()))
        folder.mkdir()
        index.save(folder)
        _, got = load_index(folder, "hnsw-sq8", 48, index.params).search(queries, 5)
        return float(np.mean([len(set(g) & set(t)) / 5 for g, t in zip(got, truth, strict=True)]))

    plain, sq8, pq = recall({}), recall({"rerank": 8}), recall({"rerank": 8, "rerank_pq": 24})
    assert plain < 0.8 and sq8 >= 0.95 and pq >= plain + 0.05


def test_auto_picks_by_catalog_size_and_never_projects_by_default():
    """The bands of docs/scale.md: exact, then HNSW over float16, then over 8-bit codes of the full vectors —
    no PCA, which cost recall on vectors with the real model's spectrum."""
    from cloud_lambda.index.choice import EXACT_MAX_ROWS, FP16_MAX_ROWS, LARGE_ROWS, choose

    assert choose(EXACT_MAX_ROWS, 1280) == ("exact", {})
    assert choose(EXACT_MAX_ROWS + 1, 1280)[0] == "hnsw-fp16"
    assert choose(FP16_MAX_ROWS, 1280)[0] == "hnsw-fp16"
    # A larger graph misses more near-ties: the search widens with the catalog.
    assert choose(LARGE_ROWS, 1280)[1]["ef_search"] < choose(LARGE_ROWS + 1, 1280)[1]["ef_search"]
    kind, params = choose(2_000_000, 1280)
    assert kind == "hnsw-sq8" and "pca" not in params
    create_index(kind, 1280, **params)  # the parameters are ones the kind accepts


def _distances(run) -> int:  # type: ignore[no-untyped-def]
    """Distance computations of the HNSW walks inside ``run()`` (faiss's global counters)."""
    import faiss

    faiss.cvar.hnsw_stats.reset()
    run()
    return int(faiss.cvar.hnsw_stats.ndis)


@pytest.mark.parametrize("stages", [{}, {"pca": 24, "rerank": 4}], ids=["plain", "pca+rerank"])
def test_a_message_walks_each_region_with_ef_regions_for_that_call_only(stages: dict, tmp_path: Path):
    """Several region vectors of one message are walked with ``ef_regions`` (saved with the index, settable at
    load); a lone query, and the index's own setting afterwards, keep ``ef_search``."""
    from cloud_lambda.index.fold import search_items

    base = unit(3000, 48, 7)
    regions = base[:4] + 0.05 * unit(4, 48, 8)
    regions /= np.linalg.norm(regions, axis=1, keepdims=True)
    index = create_index("hnsw-fp16", 48, M=16, ef_search=128, ef_regions=16, **stages)
    index.build(base)
    index.save(tmp_path)
    loaded = load_index(tmp_path, "hnsw-fp16", 48, index.params)
    assert loaded.params["ef_regions"] == 16

    wide = _distances(lambda: loaded.search(regions, 5))
    narrow = _distances(lambda: loaded.search_regions(regions, 5))
    assert narrow < wide * 0.6
    assert _distances(lambda: loaded.search(regions, 5)) == wide  # the shared index kept its efSearch
    assert _distances(lambda: loaded.search_regions(regions[:1], 5)) == _distances(
        lambda: loaded.search(regions[:1], 5)
    )
    assert _distances(lambda: search_items(loaded, np.arange(3000), 1, regions, 5)) == narrow  # the fold uses it
    _, got = loaded.search_regions(regions, 1)
    assert list(got[:, 0]) == [0, 1, 2, 3]

    loaded.set_search_param("ef_regions", 0)  # 0: regions walk like a lone query
    assert _distances(lambda: loaded.search_regions(regions, 5)) == wide
    with pytest.raises(VectorIndexError, match=r"ef_regions must be an integer in 0\.\.4096"):
        create_index("hnsw", 48, ef_regions=-1)


def test_auto_walks_message_regions_narrower_only_where_measured():
    from cloud_lambda.index.choice import HEAD_REGION_EF, LARGE_ROWS, REGION_EF, choose

    for dim, ef in ((1280, REGION_EF), (256, HEAD_REGION_EF)):
        _, params = choose(LARGE_ROWS, dim)
        assert params["ef_regions"] == ef < params["ef_search"]
        assert "ef_regions" not in choose(LARGE_ROWS + 1, dim)[1]  # above: as a lone query
        create_index("hnsw-fp16", dim, **params)
