"""The region-message bench scores each row against the exact fold: exact search agrees with it by
construction, a graph row counts its distance computations, and every row sees every message."""

from __future__ import annotations

import numpy as np

from bench.region_search import run_space


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rows_of_one_catalog_are_scored_against_the_exact_fold() -> None:
    base = unit(300, 16, 0)  # auto searches a catalog this small exactly
    msgs = (base[:12, None, :] + 0.3 * unit(48, 16, 1).reshape(12, 4, 16)).astype(np.float32)
    rows = run_space("tiny", base, msgs, None, None, [(8, 4), (0, 0)])
    assert [row[1] for row in rows] == ["exact (auto)", "hnsw-fp16 M 8", "exact"]
    exact, graph, _ = rows
    assert exact[3] == 1.0 and exact[4] == 1.0 and exact[5] == 0  # recall, top-1, distances
    assert graph[5] > 0 and 0 < graph[3] <= 1.0
