"""The benchmark's head-space vectors are exactly the spectral set projected through the head, whether the
full-dimension file exists or the items are generated and projected block by block (a 2M set never writes its
full vectors), and the head they used is recorded and reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bench.vectors as vectors
from bench.vectors import Spectrum, bench_head, head_set, spectral_set
from model.retrieval.head import ProjectionHead


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vectors, "CACHE", tmp_path / "bench")
    monkeypatch.setattr(vectors, "HEAD_COPY", tmp_path / "bench" / "head" / "head.npz")
    monkeypatch.setattr(vectors, "BLOCK", 50)  # several blocks, queries picked from each
    monkeypatch.delenv("BENCH_HEAD", raising=False)
    return tmp_path / "bench"


def tiny_spectrum(dim: int = 16) -> Spectrum:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((200, dim)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    return Spectrum.fit(items, 0.2 * rng.standard_normal((200, dim)).astype(np.float32))


def tiny_head(dim: int = 16, out: int = 6) -> ProjectionHead:
    rng = np.random.default_rng(1)
    return ProjectionHead(rng.standard_normal((dim, out)), rng.standard_normal(dim) * 0.01)


@pytest.mark.parametrize("full_file_first", [False, True])
def test_head_set_is_the_spectral_set_projected(cache: Path, full_file_first: bool) -> None:
    spectrum, head = tiny_spectrum(), tiny_head()
    if full_file_first:
        spectral_set(180, spectrum, queries=30)
    projected = head_set(180, spectrum, head, queries=30)
    full = spectral_set(180, spectrum, queries=30)
    np.testing.assert_allclose(projected.base, head.project(np.asarray(full.base)), atol=1e-6)
    np.testing.assert_allclose(projected.queries, head.project(full.queries), atol=1e-6)
    assert projected.head is head and projected.base.shape == (180, 6)
    # Cached: a second call reads the same vectors back.
    again = head_set(180, spectrum, head, queries=30)
    np.testing.assert_array_equal(np.asarray(again.base), np.asarray(projected.base))


def test_bench_head_copies_the_head_it_used_and_says_where_it_came_from(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "REPO", tmp_path / "checkout")
    with pytest.raises(FileNotFoundError, match="BENCH_HEAD"):
        bench_head()
    given = tmp_path / "head.npz"
    given.write_bytes(tiny_head().to_bytes())
    monkeypatch.setenv("BENCH_HEAD", str(given))
    head, source = bench_head()
    assert source == str(given) and head.sha256 == tiny_head().sha256
    given.unlink()
    monkeypatch.delenv("BENCH_HEAD")
    reused, source = bench_head()
    assert source == str(vectors.HEAD_COPY) and reused.sha256 == head.sha256


def test_the_fitted_spectrum_is_kept_so_later_runs_generate_the_same_sets(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    items, residuals = rng.standard_normal((100, 16)).astype(np.float32), rng.standard_normal((100, 16))
    first = Spectrum.cached(items, residuals.astype(np.float32))
    monkeypatch.setattr(Spectrum, "fit", classmethod(lambda cls, *_: pytest.fail("fitted again")))
    again = Spectrum.cached(items, residuals.astype(np.float32))
    for name in ("mean", "between", "view"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert spectral_set(120, again, 10).base.tolist() == spectral_set(120, first, 10).base.tolist()
