"""Catalog indexing on real photos plus broken files: report reasons, resume after a kill, shards = single run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.indexer import IndexingError, IndexOptions, Shard, run_index
from cloud_lambda.catalog.layout import load_catalog
from cloud_lambda.catalog.merge import merge_catalogs
from cloud_lambda.metadata.sqlite_store import SqliteStore
from model.data.photos import load_photos
from model.featurizer import Featurizer
from model.image_rules import decode

REPO = Path(__file__).resolve().parents[2]
GIF_1PX = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
BAD = {
    "truncated.jpg": "truncated",
    "animation.gif": "unsupported_format",
    "tiny.png": "too_small",
    "wide.png": "too_big",
    "sliver.png": "aspect_ratio",
    "notes.jpg": "not_image",
}


def _make_folder(root: Path, count: int = 12) -> list[str]:
    root.mkdir(parents=True)
    good = []
    for i, (name, image) in enumerate(load_photos(count)):
        stem = name.split(":", 1)[1]
        ext = ".png" if i % 3 == 0 else ".jpg"
        # A PNG saved under .jpg: the content decides, not the extension.
        if i == 1:
            ext = ".jpg"
            ok, data = cv2.imencode(".png", image)
        else:
            ok, data = cv2.imencode(ext, image)
        assert ok
        (root / f"{stem}{ext}").write_bytes(data.tobytes())
        good.append(stem)
    ok, jpeg = cv2.imencode(".jpg", load_photos(1)[0][1])
    (root / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (root / "animation.gif").write_bytes(GIF_1PX)
    (root / "tiny.png").write_bytes(cv2.imencode(".png", np.full((40, 40, 3), 128, np.uint8))[1].tobytes())
    (root / "wide.png").write_bytes(cv2.imencode(".png", np.full((100, 5000, 3), 90, np.uint8))[1].tobytes())
    (root / "sliver.png").write_bytes(cv2.imencode(".png", np.full((70, 1500, 3), 90, np.uint8))[1].tobytes())
    (root / "notes.jpg").write_text("these are not the pixels you are looking for\n")
    return sorted(good)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("photos") / "catalog"
    good = _make_folder(root)
    meta = root.parent / "items.jsonl"
    meta.write_text(
        json.dumps({"id": "SKU-CHELSEA", "file": "chelsea.jpg", "title": "Chelsea the cat", "price": 12.5})
        + "\n"
        + json.dumps({"id": "SKU-GHOST", "file": "ghost.jpg", "title": "no such image"})
        + "\n"
    )
    return root, good


class CountingFeaturizer:
    """The real featurizer, counting images; optionally crashing after some batches (a mid-run kill)."""

    def __init__(self, inner: Featurizer, crash_after_batches: int | None = None) -> None:
        self.inner = inner
        self.images = 0
        self.batches = 0
        self.crash_after = crash_after_batches

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def featurize(self, batch: np.ndarray) -> np.ndarray:
        if self.crash_after is not None and self.batches >= self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.images += len(batch)
        return self.inner.featurize(batch)


def _options(source: Path, out: Path, model: Path, **kw) -> IndexOptions:
    return IndexOptions(source=str(source), out=out, model=model, batch_size=3, workers=2, progress=False, **kw)


def test_index_folder_with_bad_files(photo_folder, tiny_model: Path, tiny_featurizer: Featurizer, tmp_path: Path):
    root, good = photo_folder
    out = tmp_path / "index"
    options = _options(root, out, tiny_model, metadata=root.parent / "items.jsonl")
    result = run_index(options, featurizer=CountingFeaturizer(tiny_featurizer))
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    assert summary["indexed"] == len(good)
    report = {r.get("key") or r.get("id"): r for r in map(json.loads, (out / "report.jsonl").read_text().splitlines())}
    for name, reason in BAD.items():
        assert report[name]["reason"] == reason, report[name]
        assert report[name]["message"]
    assert report["SKU-GHOST"]["reason"] == "missing_image"
    assert "aspect ratio 50.0:1" in report["wide.png"]["message"]
    assert summary["rejects_by_reason"] == {**{r: 1 for r in BAD.values()}, "missing_image": 1}
    assert summary["throughput"]["images_per_s"] > 0

    catalog = load_catalog(out)
    assert catalog.model_id == tiny_featurizer.model_id
    expected_ids = sorted(["SKU-CHELSEA" if g == "chelsea" else g for g in good])
    assert catalog.ids == expected_ids
    store = SqliteStore(out / "metadata.sqlite", create=False)
    records = store.get_many(catalog.ids)
    assert all(r.model_id == catalog.model_id for r in records.values())
    assert records["SKU-CHELSEA"].title == "Chelsea the cat"
    assert records["SKU-CHELSEA"].extra == {"price": 12.5}
    assert records["coffee"].title == "Coffee"
    # Stored vectors are what the featurizer gives for the same image (decoded DCT-reduced, as the indexer
    # does for a JPEG far larger than the model input), and practically what a full decode gives.
    vectors = np.load(out / "vectors.npy")
    data = (root / "coffee.jpg").read_bytes()
    reduced, _ = decode(data, min_side=tiny_featurizer.input_size)
    assert reduced.shape[0] < 400
    stored = vectors[catalog.ids.index("coffee")]
    np.testing.assert_allclose(stored, tiny_featurizer.featurize_frame(reduced), atol=1e-5)
    assert float(stored @ tiny_featurizer.featurize_frame(cv2.imread(str(root / "coffee.jpg")))) > 0.99
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index"] == {"kind": "exact", "params": {}, "file": "index.exact.npy"}


def test_crash_mid_run_then_rerun_skips_finished(photo_folder, tiny_model, tiny_featurizer, tmp_path: Path):
    root, good = photo_folder
    out = tmp_path / "index"
    crashing = CountingFeaturizer(tiny_featurizer, crash_after_batches=2)
    with pytest.raises(KeyboardInterrupt):
        run_index(_options(root, out, tiny_model, index_kind="hnsw", index_params={"M": 8}), featurizer=crashing)
    assert not out.exists()  # nothing half-written
    assert crashing.images == 6
    again = CountingFeaturizer(tiny_featurizer)
    result = run_index(_options(root, out, tiny_model, index_kind="hnsw", index_params={"M": 8}), featurizer=again)
    assert again.images == len(good) - 6
    assert result.summary["featurized_this_run"] == len(good) - 6
    assert result.summary["reused_from_journal"] == 6
    assert load_catalog(out).index.count == len(good)
    # A third run with nothing new featurizes nothing, and swaps the folder in again.
    third = CountingFeaturizer(tiny_featurizer)
    run_index(_options(root, out, tiny_model), featurizer=third)
    assert third.images == 0
    assert load_catalog(out).manifest.index.kind == "exact"


def test_sigkill_mid_run_then_rerun(photo_folder, tiny_model, tmp_path: Path):
    """The real CLI, killed with SIGKILL once a batch is journaled; the rerun does not redo that batch."""
    root, good = photo_folder
    out = tmp_path / "index"
    journal = tmp_path / "index.work" / "journal.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "model.hub",
        "catalog",
        "index",
        str(root),
        "--out",
        str(out),
        "--model",
        str(tiny_model),
        "--batch-size",
        "1",
        "--workers",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and sum('"part"' in line for line in journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    parts_before = sum('"part"' in line for line in journal.read_text().splitlines())
    if parts_before >= len(good):
        pytest.skip("the run finished before it could be killed")
    assert not out.exists()
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["reused_from_journal"] == parts_before
    assert summary["featurized_this_run"] == len(good) - parts_before
    assert summary["indexed"] == len(good)


def test_shards_merged_equal_single_run(photo_folder, tiny_model, tiny_featurizer, tmp_path: Path):
    root, _ = photo_folder
    meta = root.parent / "items.jsonl"
    single = run_index(_options(root, tmp_path / "single", tiny_model, metadata=meta), featurizer=tiny_featurizer)
    shard_dirs = []
    for i in range(3):
        out = tmp_path / f"shard-{i}"
        run_index(_options(root, out, tiny_model, metadata=meta, shard=Shard(i, 3)), featurizer=tiny_featurizer)
        shard_dirs.append(out)
    with pytest.raises(ValueError, match="missing"):
        merge_catalogs(shard_dirs[:2], tmp_path / "partial")
    merged = merge_catalogs(shard_dirs, tmp_path / "merged")
    a, b = load_catalog(tmp_path / "single"), load_catalog(tmp_path / "merged")
    assert a.ids == b.ids and a.model_id == b.model_id
    np.testing.assert_allclose(np.load(a.folder / "vectors.npy"), np.load(b.folder / "vectors.npy"), atol=1e-6)
    sa, sb = SqliteStore(a.folder / "metadata.sqlite"), SqliteStore(b.folder / "metadata.sqlite")
    assert list(sa.iter_all()) == list(sb.iter_all())
    assert merged["indexed"] == single.summary["indexed"]
    assert merged["listed"] == single.summary["listed"]
    # missing_image is a whole-catalog check: only the single run can know a row matched no shard.
    single_reasons = dict(single.summary["rejects_by_reason"])
    single_reasons.pop("missing_image")
    assert merged["rejects_by_reason"] == single_reasons


def test_shard_spec_and_batch_env():
    assert Shard.parse("2/5") == Shard(2, 5)
    for bad in ("5/5", "a/2", "3", "-1/2"):
        with pytest.raises(IndexingError):
            Shard.parse(bad)
    assert Shard.from_env(4, {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == Shard(3, 4)
    assert Shard.from_env(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "VS_SHARD_COUNT": "2"}) == Shard(1, 2)
    assert Shard.from_env(None, {}) is None
    with pytest.raises(IndexingError):
        Shard.from_env(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "0"})
    keys = [f"img-{i}.jpg" for i in range(300)]
    owners = [sum(Shard(i, 3).owns(k) for i in range(3)) for k in keys]
    assert owners == [1] * 300


def test_work_dir_of_another_model_is_refused(photo_folder, tiny_model, tiny_featurizer, tmp_path: Path):
    from model.testing import build_tiny_model

    root, _ = photo_folder
    out = tmp_path / "index"
    run_index(_options(root, out, tiny_model), featurizer=tiny_featurizer)
    other = Featurizer(build_tiny_model(tmp_path / "other.onnx", seed=5), backend="onnxruntime")
    with pytest.raises(IndexingError, match="holds vectors of model"):
        run_index(_options(root, out, tmp_path / "other.onnx"), featurizer=other)
