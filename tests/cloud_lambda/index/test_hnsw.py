"""A message's region walks use ``ef_regions`` through faiss parameter objects made once per loaded index and
per setting: reused while the setting stands, made again when it changes or the index is rebuilt (a rebuild may
add a stage in front of the graph, which the parameters must wrap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud_lambda.index import create_index, load_index


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def distances(run) -> int:  # type: ignore[no-untyped-def]
    import faiss

    faiss.cvar.hnsw_stats.reset()
    run()
    return int(faiss.cvar.hnsw_stats.ndis)


def test_region_parameters_follow_the_setting_and_the_rebuilt_index() -> None:
    base, regions = unit(3000, 48, 0), unit(4, 48, 1)
    index = create_index("hnsw-fp16", 48, M=16, ef_search=128, ef_regions=16, pca=24, rerank=2)
    index.build(np.zeros((0, 48), np.float32))  # empty: no stages in front of the graph yet
    assert index.search_regions(regions, 5)[1].tolist() == [[-1] * 5] * 4
    index.build(base)  # now behind projection and re-ranking: parameters for the empty one do not fit
    narrow = distances(lambda: index.search_regions(regions, 5))
    assert narrow == distances(lambda: index.search_regions(regions, 5))  # the same walk with the kept parameters
    assert narrow < 0.6 * distances(lambda: index.search(regions, 5))
    index.set_search_param("ef_regions", 64)
    wider = distances(lambda: index.search_regions(regions, 5))
    assert narrow < wider < distances(lambda: index.search(regions, 5))
    _, found = index.search_regions(base[:4], 1)
    assert found[:, 0].tolist() == [0, 1, 2, 3]


def test_a_changed_rerank_applies_to_the_next_message(tmp_path: Path) -> None:
    """The walk runs in 8 projected dimensions; ``rerank`` × k of its candidates are re-scored on the full
    vectors' codes, so more candidates find better items — as an index loaded with the new setting does."""
    base = unit(3000, 48, 2)
    regions = base[:4] + 0.3 * unit(4, 48, 3)
    index = create_index("hnsw-sq8", 48, M=16, ef_search=128, ef_regions=64, pca=8, rerank=1)
    index.build(base)
    index.save(tmp_path)
    _, before = index.search_regions(regions, 5)
    index.set_search_param("rerank", 32)
    _, after = index.search_regions(regions, 5)
    _, loaded = load_index(tmp_path, "hnsw-sq8", 48, {**index.params}).search_regions(regions, 5)
    assert after.tolist() == loaded.tolist() != before.tolist()
