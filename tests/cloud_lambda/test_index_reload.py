"""A warm search picks up an index rewritten in place (``catalog adapt`` adds a head, a re-index) without a
restart, and never serves a half-written one: a folder away mid-swap, a load that straddles a swap or files
written in place out of order leave the complete old index serving until a complete new one has loaded."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cloud_lambda.search.catalogs as catalogs_mod
from cloud_lambda.catalog.layout import MANIFEST, apply_head, load_catalog
from cloud_lambda.index.fold import search_items
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.retrieval.head import ProjectionHead
from tests.cloud_lambda.conftest import TinyCatalog, feature_event

SECTION = {"kind": "projection_head", "data_hash": "d" * 64}


def head_for(dim: int, seed: int) -> ProjectionHead:
    rng = np.random.default_rng(seed)
    return ProjectionHead(rng.standard_normal((dim, 8)).astype(np.float32), rng.standard_normal(dim) * 0.01)


@pytest.fixture
def folder(tmp_path: Path, tiny_catalog: TinyCatalog) -> Path:
    """A private copy of the tiny catalog: these tests rewrite it under a running service."""
    return Path(shutil.copytree(tiny_catalog.folder, tmp_path / "index"))


@pytest.fixture
def service(folder: Path, cloud_settings: CloudSettings) -> Iterator[SearchService]:
    svc = SearchService(cloud_settings.model_copy(update={"index_dir": str(folder), "index_reload_s": 0.0}))
    yield svc
    svc.metadata.close()


class Camera:
    """Sends item 7's vector as a camera would and reads back the record the service stored."""

    def __init__(self, service: SearchService, tiny_catalog: TinyCatalog) -> None:
        self.service, self.catalog, self.seq = service, tiny_catalog, 0

    def send(self, vector: np.ndarray | None = None) -> dict:
        self.seq += 1
        vector = self.catalog.vectors[7] if vector is None else vector
        result = self.service.handle_feature_event(feature_event(vector, self.catalog.model_id, seq=self.seq))
        assert result["status"] == "accepted", result
        record: dict = self.service.matches.latest("cam-01", 1)[0]
        assert record["seq"] == self.seq
        return record


def test_a_warm_service_serves_the_adapted_index_once_catalog_adapt_rewrote_it(
    folder: Path, service: SearchService, tiny_catalog: TinyCatalog
) -> None:
    camera = Camera(service, tiny_catalog)
    before = camera.send()
    assert "head" not in before and before["matches"][0]["id"] == "item-007"

    head = head_for(tiny_catalog.vectors.shape[1], seed=1)
    apply_head(folder, head, SECTION)  # what `catalog adapt` does at its end
    after = camera.send()
    assert after["head"] == head.sha256[:12]  # the same service, now searching projected vectors
    assert after["matches"][0]["id"] == "item-007" and after["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert service.counters.snapshot()["index_reloaded"] == 1

    apply_head(folder, None, None)  # `catalog adapt --remove`: back to the model's vectors, again without a restart
    assert "head" not in camera.send()


def test_the_threshold_follows_the_index_that_answers(
    folder: Path, cloud_settings: CloudSettings, tiny_catalog: TinyCatalog
) -> None:
    """A head changes the scale of the scores: an adapted index is held to ``min_score_adapted``."""
    head = head_for(tiny_catalog.vectors.shape[1], seed=2)
    query = tiny_catalog.vectors[7] + 0.5 * tiny_catalog.vectors[8]
    query = (query / np.linalg.norm(query)).astype(np.float32)
    apply_head(folder, head, SECTION)
    catalog = load_catalog(folder)
    adapted_top = float(search_items(catalog.index, catalog.owners, 1, query, 1, catalog.head)[0][0])
    settings = cloud_settings.model_copy(
        update={
            "index_dir": str(folder),
            "index_reload_s": 0.0,
            "min_score": -1.0,
            "min_score_adapted": adapted_top + 1e-3,
        }
    )
    service = SearchService(settings)
    try:
        camera = Camera(service, tiny_catalog)
        assert camera.send(query)["matches"] == []  # below the adapted threshold
        apply_head(folder, None, None)
        assert len(camera.send(query)["matches"]) == 3  # unadapted: min_score -1 lets every top-k through
    finally:
        service.metadata.close()


def test_a_folder_away_mid_swap_or_written_in_place_keeps_the_old_index_serving(
    folder: Path, service: SearchService, tiny_catalog: TinyCatalog
) -> None:
    camera = Camera(service, tiny_catalog)
    camera.send()
    head = head_for(tiny_catalog.vectors.shape[1], seed=3)

    # Between the two renames of a swap the folder is not there.
    aside = folder.with_name("aside")
    folder.rename(aside)
    assert camera.send()["matches"][0]["id"] == "item-007"
    aside.rename(folder)

    # Written in place, manifest first: it announces a head whose file is not there yet.
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["adaptation"] = {**SECTION, "head_sha256": head.sha256, "in_dim": head.in_dim, "out_dim": head.out_dim}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    record = camera.send()
    assert "head" not in record and record["matches"][0]["id"] == "item-007"
    assert service.counters.snapshot()["index_reload_failed"] == 2

    # Once the writer has finished (here: the whole adapted folder swapped in), the next message gets it.
    apply_head(folder, None, None)
    apply_head(folder, head, SECTION)
    assert camera.send()["head"] == head.sha256[:12]


def test_a_load_that_straddles_a_swap_is_dropped_and_the_next_check_loads_the_complete_index(
    folder: Path, service: SearchService, tiny_catalog: TinyCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = Camera(service, tiny_catalog)
    camera.send()
    first, second = head_for(tiny_catalog.vectors.shape[1], seed=4), head_for(tiny_catalog.vectors.shape[1], seed=5)
    apply_head(folder, first, SECTION)
    real_load = catalogs_mod.load_catalog
    swapped: list[bool] = []

    def load_then_swap(path: Path, **kwargs: object) -> object:
        catalog = real_load(path, **kwargs)  # type: ignore[arg-type]
        if not swapped:  # a writer swaps the next version in while this load reads the files
            swapped.append(True)
            apply_head(folder, second, SECTION)
        return catalog

    monkeypatch.setattr(catalogs_mod, "load_catalog", load_then_swap)
    assert "head" not in camera.send()  # the straddling load of `first` was dropped: the old index served
    assert camera.send()["head"] == second.sha256[:12]


def test_a_writer_rewriting_the_index_over_and_over_never_breaks_a_search(
    folder: Path, service: SearchService, tiny_catalog: TinyCatalog
) -> None:
    """Messages while a writer swaps the index between two heads and none: each record comes from one complete
    version (the right item, score 1 in its own space) and every message is answered."""
    heads = [head_for(tiny_catalog.vectors.shape[1], seed=s) for s in (6, 7)]
    camera = Camera(service, tiny_catalog)
    done = threading.Event()

    def writer() -> None:
        for n in range(30):
            head = heads[n % 2] if n % 3 else None
            apply_head(folder, head, SECTION if head is not None else None)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        record = camera.send()
        assert record["matches"][0]["id"] == "item-007"
        assert record["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    thread.join()
    final = camera.send()
    assert final.get("head") == heads[1].sha256[:12]  # n = 29: the last write, loaded once the writer stopped
