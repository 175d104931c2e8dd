"""The indexing journal under duplicates, concurrent runs and damaged work dirs.

Two byte-identical images under different ids failed every run ("journal holds 2 view rows, expected 1");
two indexers on one ``--out`` both "succeeded" and left a work dir that failed every later run, with no
hint to delete it.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.indexer import IndexingError, IndexOptions, WorkDirLock, run_index
from cloud_lambda.catalog.layout import load_catalog
from model.featurizer import Featurizer
from tests.hardening.conftest import _pattern, count_case


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for i in range(4):
        cv2.imwrite(str(root / f"item-{i}.png"), _pattern(i))
    # Byte-identical copies under other ids: the same product photographed once, listed twice.
    (root / "copy-of-0.png").write_bytes((root / "item-0.png").read_bytes())
    (root / "also-0.png").write_bytes((root / "item-0.png").read_bytes())
    return root


def options(folder: Path, out: Path, model: Path, **kw: object) -> IndexOptions:
    return IndexOptions(source=str(folder), out=out, model=model, workers=0, progress=False, batch_size=2, **kw)  # type: ignore[arg-type]


def test_identical_images_under_different_ids_are_indexed_and_rerun(
    folder: Path, tmp_path: Path, tiny_model: Path
) -> None:
    count_case("catalog: byte-identical images")
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    out = tmp_path / "index"
    first = run_index(options(folder, out, tiny_model), featurizer)
    assert first.summary["indexed"] == 6 and first.summary["featurized_this_run"] == 4
    catalog = load_catalog(out)
    ids = list(catalog.ids)
    assert sorted(ids) == ["also-0", "copy-of-0", "item-0", "item-1", "item-2", "item-3"]
    vectors = np.load(out / "vectors.npy")
    assert np.array_equal(vectors[ids.index("also-0")], vectors[ids.index("item-0")])
    assert np.array_equal(vectors[ids.index("copy-of-0")], vectors[ids.index("item-0")])
    again = run_index(options(folder, out, tiny_model), featurizer)  # resumes from the journal
    assert again.summary["indexed"] == 6 and again.summary["featurized_this_run"] == 0


def test_a_journal_with_repeated_rows_from_an_older_run_is_read(folder: Path, tmp_path: Path, tiny_model: Path) -> None:
    """Work dirs written before the fix hold each duplicate's rows twice: they are read, not refused."""
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    out = tmp_path / "index"
    run_index(options(folder, out, tiny_model), featurizer)
    work = tmp_path / "index.work"
    parts = sorted((work / "parts").glob("*.npz"))
    with np.load(parts[0]) as part:
        vectors, hashes = part["vectors"], part["hashes"]
    doubled = work / "parts" / "part-legacy.npz"
    with open(doubled, "wb") as handle:
        np.savez(handle, vectors=np.concatenate([vectors, vectors]), hashes=np.concatenate([hashes, hashes]))
    with open(work / "journal.jsonl", "a") as handle:
        handle.write(json.dumps({"part": doubled.name, "hashes": [*hashes.tolist(), *hashes.tolist()]}) + "\n")
    assert run_index(options(folder, out, tiny_model), featurizer).summary["indexed"] == 6


def _hold_lock(work: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with WorkDirLock(Path(work)):
        ready.set()
        release.wait(60)


def test_a_second_run_on_the_same_out_is_refused_while_one_runs(folder: Path, tmp_path: Path, tiny_model: Path) -> None:
    count_case("catalog: concurrent runs on one --out")
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    out = tmp_path / "index"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "index.work"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(IndexingError) as refused:
            run_index(options(folder, out, tiny_model), featurizer)
        message = str(refused.value)
        assert "another indexing run" in message and str(holder.pid) in message and "wait for it" in message
        assert not out.exists()
    finally:
        release.set()
        holder.join(30)
    # Once the other run is gone the lock is free again (a killed holder frees it too: flock dies with it).
    assert run_index(options(folder, out, tiny_model), featurizer).summary["indexed"] == 6


@pytest.mark.parametrize(
    "damage", ["corrupt journal line", "truncated part", "journal is a folder", "work dir is a file"]
)
def test_an_unusable_work_dir_says_what_to_do(folder: Path, tmp_path: Path, tiny_model: Path, damage: str) -> None:
    count_case("catalog: unusable work dir")
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    out = tmp_path / "index"
    work = tmp_path / "index.work"
    run_index(options(folder, out, tiny_model), featurizer)
    (folder / "item-9.png").write_bytes(cv2.imencode(".png", _pattern(9))[1].tobytes())
    if damage == "corrupt journal line":
        lines = (work / "journal.jsonl").read_text().splitlines()
        lines.insert(1, '{"part": "x", "hashes": [')
        (work / "journal.jsonl").write_text("\n".join(lines) + "\n")
    elif damage == "truncated part":
        part = sorted((work / "parts").glob("*.npz"))[0]
        part.write_bytes(part.read_bytes()[:40])
    elif damage == "journal is a folder":
        (work / "journal.jsonl").unlink()
        (work / "journal.jsonl").mkdir()
    else:
        import shutil

        shutil.rmtree(work)
        work.write_text("not a folder")
    time.sleep(0.01)
    with pytest.raises(IndexingError) as refused:
        run_index(options(folder, out, tiny_model), featurizer)
    message = str(refused.value)
    assert str(work) in message and "delete it" in message.lower(), message
    assert "--work-dir" in message, message
