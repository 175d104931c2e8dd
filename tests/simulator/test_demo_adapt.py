"""``make demo``'s catalog adaptation: ``catalog adapt`` runs in a background process while a search is already
answering; once it has written the adapted index, the same search answers from it (no restart); a second
demo finds the head current and starts adapted; ``--once`` without a head plays unadapted and says so."""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.catalog.layout import apply_head, read_manifest
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from simulator.console import CLEAR, Console
from simulator.demo import prepare_adaptation
from simulator.demo_adapt import BackgroundAdaptation, DemoAdaptation, ensure_adapted, parse_progress
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import feature_event
from tests.simulator.conftest import TinyCatalog


@dataclass
class Setup:
    plan: DemoAdaptation
    ids: list[str]
    vectors: np.ndarray


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_catalog: TinyCatalog) -> Setup:
    """The tiny catalog's images indexed with a tiny region model (the demo's retrieval settings); adaptation
    cut to 2 views per item, 1 epoch, a 4-d head."""
    from model.testing import export_tiny_region_model

    root = tmp_path_factory.mktemp("demo-adapt")
    model = export_tiny_region_model(root / "model", "fp32")
    index = root / "demo-index"
    run_index(IndexOptions(source=str(tiny_catalog.images_dir), out=index, model=model, workers=0, progress=False))
    plan = DemoAdaptation(index, tiny_catalog.images_dir, None, model, views_per_item=2, epochs=1, dim=4)
    return Setup(plan, read_manifest_ids(index), np.load(index / "vectors.npy"))


def read_manifest_ids(index: Path) -> list[str]:
    import json

    return list(json.loads((index / "ids.json").read_text()))


@pytest.fixture
def search(setup: Setup, redis_server: RedisProcess) -> Iterator[SearchService]:
    settings = CloudSettings.build(
        index_dir=str(setup.plan.index_dir), redis_url=redis_server.url, redis_timeout_s=1.0, index_reload_s=0.0
    )
    service = SearchService(settings)
    yield service
    service.metadata.close()


def send(service: SearchService, setup: Setup, seq: int) -> dict:
    """Item 0's vector as a camera message; → the record the search stored for it."""
    result = service.handle_feature_event(feature_event(setup.vectors[0], setup.plan.model_id, seq=seq))
    assert result["status"] == "accepted", result
    record: dict = service.matches.latest("cam-01", 1)[0]
    assert record["seq"] == seq
    return record


def modes(once: bool, adapt: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(once=once, adapt=adapt)


def test_background_adaptation_switches_the_running_search_to_the_adapted_index(
    setup: Setup, search: SearchService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = setup.plan
    assert plan.state() == "missing"
    assert prepare_adaptation(modes(once=True), plan) is False  # --once does not wait for it ...
    assert "not adapted yet: this run plays the index as indexed" in capsys.readouterr().out
    assert prepare_adaptation(modes(once=False), plan) is True  # ... a live demo adapts in the background
    assert "adapting the catalog in the background" in capsys.readouterr().out

    first = send(search, setup, seq=1)
    assert "head" not in first and first["matches"][0]["id"] == setup.ids[0]  # matches at once, unadapted

    shown = io.StringIO()
    adaptation = BackgroundAdaptation(plan, Console(shown, tty=False), tmp_path / "adapt.log").start()
    assert adaptation.wait(timeout=600) == 0, adaptation.tail
    section = read_manifest(plan.index_dir).adaptation
    assert section is not None and section["settings"] == plan.settings().as_dict()

    later = send(search, setup, seq=2)  # the same search process, never restarted
    assert later["head"] == section["head_sha256"][:12]
    assert later["matches"][0]["id"] == setup.ids[0]
    printed = shown.getvalue().splitlines()
    assert any("adapting in the background: adapt: training views" in line for line in printed)
    assert any("adapting in the background: adapt: head" in line for line in printed)
    assert printed[-1].startswith(f"   adapted index written: {len(setup.ids)} items, head ")
    assert section["head_sha256"] in (tmp_path / "adapt.log").read_text()  # the command's own summary

    # A second demo: the head fits this model, these images and these settings, so nothing runs again.
    assert plan.state() == "current"
    assert prepare_adaptation(modes(once=False), plan) is False
    assert f"adapted: head {section['head_sha256'][:12]}" in capsys.readouterr().out
    assert ensure_adapted(plan, progress=False) is None
    assert read_manifest(plan.index_dir).adaptation == section


def test_a_stopped_adaptation_says_so_and_leaves_the_index_as_it_was(setup: Setup, tmp_path: Path) -> None:
    index = Path(shutil.copytree(setup.plan.index_dir, tmp_path / "demo-index"))  # the others' index stays as is
    plan = dataclasses.replace(setup.plan, index_dir=index, views_per_item=3)
    before = read_manifest(plan.index_dir).adaptation
    shown = io.StringIO()
    adaptation = BackgroundAdaptation(plan, Console(shown, tty=False), tmp_path / "adapt.log").start()
    adaptation.stop()
    assert adaptation.wait(timeout=30) != 0
    assert "adaptation stopped; the next `make demo` resumes it" in shown.getvalue()
    assert read_manifest(plan.index_dir).adaptation == before


def test_tqdm_updates_are_read_as_the_child_writes_them() -> None:
    stream = io.StringIO()
    bar = tqdm(total=28, desc="adapt: training views", unit="item", file=stream, mininterval=0)
    bar.update(17)
    bar.close()
    updates = [parse_progress(part) for part in stream.getvalue().split("\r") if part.strip()]
    assert ("adapt: training views", 17, 28) in [u[:3] for u in updates if u]
    assert parse_progress('{"event": "export_started"}') is None


def test_the_status_line_never_splits_a_match_line_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(out, tty=True)
    console.line("demo-cam #1: Red mug (0.81)")
    console.status("   adapting in the background: adapt: head 3/30")
    console.line("demo-cam #2: Red mug (0.83)")
    console.status("   adapting in the background: adapt: head 4/30")
    console.clear_status()
    console.line("   adapted index written")
    text = out.getvalue()
    # Every line that stays starts on a cleared line and ends with a newline; the status is drawn after it.
    assert text.startswith("demo-cam #1: Red mug (0.81)\n")
    assert f"{CLEAR}demo-cam #2: Red mug (0.83)\n   adapting in the background: adapt: head 3/30" in text
    assert text.endswith(f"{CLEAR}   adapted index written\n")
    kept = [chunk.split("\n")[0] for chunk in text.split(CLEAR)]
    assert "demo-cam #2: Red mug (0.83)" in kept


def test_off_a_terminal_the_status_is_a_line_per_milestone() -> None:
    out = io.StringIO()
    console = Console(out, tty=False)
    for done in range(0, 11):
        console.status(f"views {done}/10", milestone=f"views {4 * done // 10}")
    console.line("match")
    assert out.getvalue().splitlines() == [
        "views 0/10",
        "views 3/10",
        "views 5/10",
        "views 8/10",
        "views 10/10",
        "match",
    ]


def test_adapt_first_then_no_adapt_on_a_copy_of_the_index(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--adapt first`` adapts before anything plays; ``--no-adapt`` takes the head out again (the next demo
    would adapt in the background again)."""
    index = Path(shutil.copytree(setup.plan.index_dir, tmp_path / "demo-index"))
    if read_manifest(index).adaptation:
        apply_head(index, None, None)
    plan = dataclasses.replace(setup.plan, index_dir=index)

    assert prepare_adaptation(modes(once=True, adapt="first"), plan) is False
    assert plan.state() == "current"
    assert "adapted index written:" in capsys.readouterr().out

    assert prepare_adaptation(modes(once=False, adapt="no"), plan) is False
    assert read_manifest(index).adaptation is None and plan.state() == "missing"
    assert "--no-adapt: the index's head is removed" in capsys.readouterr().out
    assert prepare_adaptation(modes(once=False), plan) is True


def test_a_head_learned_on_other_catalog_vectors_is_stale(setup: Setup, tmp_path: Path) -> None:
    """A re-index that changed how catalog vectors are made carries the old head over; the demo then adapts again,
    because the head learned the old vectors (``adaptation.catalog_views`` against ``retrieval.catalog_views``)."""
    from cloud_lambda.catalog.layout import load_catalog
    from model.retrieval.catalog_views import SINGLE_VIEW
    from model.retrieval.settings import catalog_views_of

    index = Path(shutil.copytree(setup.plan.index_dir, tmp_path / "demo-index"))
    plan = dataclasses.replace(setup.plan, index_dir=index)
    ensure_adapted(plan, progress=False)
    manifest = read_manifest(index)
    assert manifest.adaptation is not None and plan.state() == "current"
    assert manifest.adaptation["catalog_views"] == catalog_views_of(manifest.retrieval).model_dump(mode="json")
    assert catalog_views_of(manifest.retrieval).combine == "mean"  # the region model crops: the default averages

    head = load_catalog(index).head
    other = {**manifest.adaptation, "catalog_views": SINGLE_VIEW.model_dump(mode="json")}
    apply_head(index, head, other)
    assert plan.state() == "stale"
