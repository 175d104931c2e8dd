"""``--index auto`` picks the kinds docs/scale.md measured: the model's 1280-d vectors keep their bands, an
adapted catalog's 256-d head-space vectors get the kind that kept recall@5 ≥ 0.98 at 1M items and fits 2M items
in a 2 GB function, and ``catalog adapt`` chooses again for the head space when auto had chosen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloud_lambda.catalog.layout import SUMMARY, apply_head, read_manifest, write_catalog
from cloud_lambda.index import choice, create_index
from cloud_lambda.index.choice import AUTO, Band, choose
from cloud_lambda.metadata.base import ItemRecord
from model.retrieval.head import ProjectionHead


def test_the_model_vectors_keep_their_measured_bands() -> None:
    """1280-d: exact up to 1k, HNSW float16 (ef_search 128, then 256 above 100k), 8-bit codes above 300k; never
    PCA."""
    assert choose(1_000, 1280) == ("exact", {})
    small = {"M": 32, "ef_construction": 80, "ef_search": 128, "ef_regions": choice.REGION_EF}
    assert choose(1_001, 1280) == choose(20_001, 1280) == ("hnsw-fp16", small)
    assert choose(100_001, 1280) == ("hnsw-fp16", {"M": 32, "ef_construction": 80, "ef_search": 256})
    assert choose(300_000, 1280)[0] == "hnsw-fp16"
    assert choose(1_000_000, 1280) == ("hnsw-sq8", {"M": 32, "ef_construction": 80, "ef_search": 256})


@pytest.mark.parametrize(("rows", "m", "ef_search"), [(1_000_000, 48, 144), (2_000_000, 32, 768)])
def test_an_adapted_catalog_at_scale_gets_the_kind_measured_there(rows: int, m: int, ef_search: int) -> None:
    """256-d (the head's output): docs/scale.md's rows that kept recall@5 ≥ 0.98 — 0.981 at 1M with M 48 and
    ef_search 144 (p50 under 2 ms), 0.986 at 2M with M 32 and 768, the graph whose 2M-item index fits a 2 GB
    function (1,736 MiB loaded; M 48 adds ≈ 128 B per item)."""
    kind, params = choose(rows, 256)
    assert (kind, params) == ("hnsw-fp16", {"M": m, "ef_construction": 80, "ef_search": ef_search})
    assert create_index(kind, 256, **params).params["ef_search"] == ef_search  # parameters the kind accepts


def test_an_adapted_catalog_up_to_100k_searches_narrower() -> None:
    """1k-100k, 256-d: the M 48 graph, ef_search 96 for a lone query (0.985-0.987 at 100k) and 56 per region of a
    message (0.983 against the exact fold on held-out messages at 100k); above, ef_search 144, every query."""
    small = {"M": 48, "ef_construction": 80, "ef_search": 96, "ef_regions": choice.HEAD_REGION_EF}
    assert choose(1_001, 256) == choose(100_000, 256) == ("hnsw-fp16", small)
    assert small["ef_search"] > choice.HEAD_REGION_EF
    assert choose(100_001, 256) == ("hnsw-fp16", {"M": 48, "ef_construction": 80, "ef_search": 144})
    create_index("hnsw-fp16", 256, **small)  # parameters the kind accepts


def test_only_small_catalogs_are_searched_exactly_in_either_space() -> None:
    """Exact search reads every row per query: at 10k a 4-region message cost 2.4 ms (256-d) and 11 ms (1280-d)
    against 1.1 and 2.0 ms through the graph, a lone 1280-d real query 3.4 ms against 0.41 ms."""
    assert choose(1_000, 256) == ("exact", {}) == choose(1_000, 1280)
    assert choose(1_001, 256)[0] == "hnsw-fp16" == choose(1_001, 1280)[0]


def test_every_band_ends_with_an_unbounded_one_and_grows() -> None:
    for table in (choice.FULL_BANDS, choice.HEAD_BANDS):
        bounds = [band.max_rows for band in table]
        assert bounds[-1] is None and bounds[:-1] == sorted(b for b in bounds[:-1] if b is not None)


def _catalog(folder: Path, kind: str) -> Path:
    vectors = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    ids = [f"sku-{i}" for i in range(len(vectors))]
    return write_catalog(
        folder,
        model_id="m-fp32-00000000",
        dim=16,
        input_size=32,
        ids=ids,
        vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        records=[ItemRecord(id=i, model_id="m-fp32-00000000", title=i, image_url="") for i in ids],
        index_kind=kind,
        index_params={},
        summary={},
        report_lines=[],
    )


def test_catalog_adapt_chooses_again_for_the_head_space_when_auto_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny stand-ins for the two tables: 16-d model vectors take FULL_BANDS, the 6-d head space HEAD_BANDS.
    monkeypatch.setattr(choice, "HEAD_DIM_MAX", 8)
    monkeypatch.setattr(choice, "FULL_BANDS", (Band(None, "exact", {}),))
    monkeypatch.setattr(choice, "HEAD_BANDS", (Band(None, "hnsw-fp16", {"M": 16, "ef_search": 96}),))
    rng = np.random.default_rng(1)
    head = ProjectionHead(rng.standard_normal((16, 6)), np.zeros(16))
    auto = _catalog(tmp_path / "auto", AUTO)
    assert read_manifest(auto).index.kind == "exact"
    before = (auto / SUMMARY).read_text()
    apply_head(auto, head, {"kind": "projection_head"})
    manifest = read_manifest(auto)
    assert manifest.index.kind == "hnsw-fp16" and manifest.index.params["M"] == 16
    assert manifest.index.params["ef_search"] == 96
    assert json.loads((auto / SUMMARY).read_text())["index"]["kind"] == "hnsw-fp16"
    assert json.loads(before)["index"]["kind"] == "exact"
    # Removing the head chooses again for the model's vectors.
    apply_head(auto, None, None)
    assert read_manifest(auto).index.kind == "exact"


def test_catalog_adapt_keeps_a_kind_given_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choice, "HEAD_DIM_MAX", 8)
    monkeypatch.setattr(choice, "HEAD_BANDS", (Band(None, "hnsw-fp16", {"M": 16}),))
    head = ProjectionHead(np.random.default_rng(1).standard_normal((16, 6)), np.zeros(16))
    named = _catalog(tmp_path / "named", "exact")
    apply_head(named, head, {"kind": "projection_head"})
    assert read_manifest(named).index.kind == "exact"
