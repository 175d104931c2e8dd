"""The index root: `catalog index --root` adds a model's index beside the live ones; `catalog indexes list|retire`
with its guards (the last index, cameras still on it, no Redis to ask); the same layout on S3 (moto)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import cv2
import pytest
from moto import mock_aws

from cloud_lambda.catalog.layout import load_catalog, read_manifest
from cloud_lambda.catalog.roots import S3Root
from cloud_lambda.catalog.sources import upload_folder
from cloud_lambda.matches import MatchStore, connect
from model.hub import main
from model.testing import build_tiny_model
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import smooth_image


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(6):
        cv2.imwrite(str(folder / f"sku-{i}.png"), smooth_image(i))
    return folder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return build_tiny_model(folder / "a.onnx", seed=0), build_tiny_model(folder / "b.onnx", seed=1)


def model_id(model: Path) -> str:
    return json.loads(model.with_suffix(".json").read_text())["model_id"]


def index(source: Path, root: Path, model: Path, *extra: str) -> int:
    args = ["catalog", "index", str(source), "--root", str(root), "--model", str(model)]
    return main([*args, "--workers", "0", "--no-progress", *extra])


@pytest.fixture(scope="module")
def root(source: Path, two_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("root") / "indexes"
    for model in two_models:
        assert index(source, folder, model) == 0
    return folder


def test_index_root_holds_one_folder_per_model(root: Path, two_models: tuple[Path, Path]):
    names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert names == sorted(model_id(m) for m in two_models)
    for model in two_models:
        catalog = load_catalog(root / model_id(model))
        assert catalog.model_id == model_id(model) and len(catalog.ids) == 6
        assert catalog.manifest.index.kind == "exact"  # auto: 6 rows are an exact-search catalog


def test_reindexing_one_model_leaves_the_other_untouched(
    root: Path, source: Path, two_models: tuple[Path, Path], tmp_path: Path
):
    other = root / model_id(two_models[1])
    before = {p.name: p.stat().st_mtime_ns for p in other.iterdir()}
    assert index(source, root, two_models[0], "--index", "hnsw", "--index-param", "M=8") == 0
    assert read_manifest(root / model_id(two_models[0])).index.kind == "hnsw"
    assert {p.name: p.stat().st_mtime_ns for p in other.iterdir()} == before


def test_index_parameters_need_a_named_kind(source: Path, two_models: tuple[Path, Path], tmp_path: Path, capsys):
    assert index(source, tmp_path / "r", two_models[0], "--index-param", "M=8") == 2
    assert "name it with --index" in capsys.readouterr().err
    assert index(source, tmp_path / "r", two_models[0], "--index", "ivfpq", "--index-param", "bogus=3") == 2
    assert "unknown ivfpq parameters" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_list_counts_cameras_per_model(root: Path, two_models: tuple[Path, Path], redis_server: RedisProcess, capsys):
    store = MatchStore(connect(redis_server.url))
    now = time.time()
    for n, device in enumerate(("cam-1", "cam-2", "cam-3")):
        model = two_models[0] if n < 2 else two_models[1]
        store.push({"device_id": device, "seq": 1, "model_id": model_id(model), "searched_at": now, "matches": []})
    assert main(["catalog", "indexes", "list", str(root), "--redis-url", redis_server.url, "--json"]) == 0
    rows = {row["model_id"]: row for row in json.loads(capsys.readouterr().out)["indexes"]}
    assert rows[model_id(two_models[0])]["cameras"] == 2 and rows[model_id(two_models[1])]["cameras"] == 1
    assert rows[model_id(two_models[0])]["items"] == 6


def test_retire_guards(
    source: Path, two_models: tuple[Path, Path], redis_server: RedisProcess, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.delenv("VS_REDIS_URL", raising=False)
    root = tmp_path / "root"
    for model in two_models:
        assert index(source, root, model) == 0
    old, new = model_id(two_models[0]), model_id(two_models[1])
    retire = ["catalog", "indexes", "retire", str(root), old]
    assert main(retire) == 2
    assert "cannot tell whether cameras still use" in capsys.readouterr().err

    store = MatchStore(connect(redis_server.url))
    store.push({"device_id": "cam-old", "seq": 1, "model_id": old, "searched_at": time.time(), "matches": []})
    assert main([*retire, "--redis-url", redis_server.url]) == 2
    err = capsys.readouterr().err
    assert "1 camera(s)" in err and "cam-old" in err and (root / old).is_dir()

    # Moved to the new model: its latest record now carries the new id, and the old index can go.
    store.push({"device_id": "cam-old", "seq": 2, "model_id": new, "searched_at": time.time(), "matches": []})
    assert main([*retire, "--redis-url", redis_server.url]) == 0
    assert json.loads(capsys.readouterr().out)["remaining"] == [new]
    assert not (root / old).exists() and not [p for p in root.iterdir() if p.name.startswith(".retired")]

    assert main(["catalog", "indexes", "retire", str(root), new, "--force"]) == 2
    assert "the only index" in capsys.readouterr().err
    assert main(["catalog", "indexes", "retire", str(root), "nope", "--force"]) == 2
    assert f"it has: {new}" in capsys.readouterr().err


@pytest.fixture
def s3(monkeypatch):
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="cat")
        yield client


def test_s3_root_lists_complete_indexes_and_downloads_only_what_search_needs(
    s3, root: Path, two_models: tuple[Path, Path], monkeypatch, tmp_path: Path
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    a, b = (model_id(m) for m in two_models)
    upload_folder(root / a, f"s3://cat/index/live/{a}", s3)
    # An upload that has not reached its manifest (it goes last) is not an index yet.
    s3.put_object(Bucket="cat", Key=f"index/live/{b}/ids.json", Body=b"[]")
    s3_root = S3Root("s3://cat/index/live", s3)
    assert s3_root.model_ids() == [a] and not s3_root.single
    upload_folder(root / b, f"s3://cat/index/live/{b}", s3)
    assert s3_root.model_ids() == sorted([a, b])
    local = s3_root.local_folder(a)
    assert (local / "manifest.json").exists() and not (local / "vectors.npy").exists()
    assert load_catalog(local).model_id == a
    s3_root.retire(a)
    assert s3_root.model_ids() == [b]
    assert s3.list_objects_v2(Bucket="cat", Prefix=f"index/live/{a}/").get("KeyCount") == 0
    single = S3Root(f"s3://cat/index/live/{b}", s3)
    assert single.single and single.model_ids() == [b]
