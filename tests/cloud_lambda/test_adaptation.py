"""Catalog adaptation in the cloud: the projection head lives in the index folder, is checked against the
manifest at load, projects every query and every catalog vector, survives a re-index (new items projected
without retraining), and ``catalog adapt`` trains it from the catalog's own images, resumably."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.cli import register
from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.catalog.layout import CatalogError, apply_head, load_catalog, read_manifest, write_catalog
from cloud_lambda.index import create_index
from cloud_lambda.index.fold import search_items
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.adapt.head import HeadSettings, HeadState, train_head
from model.retrieval.head import HEAD_FILE, ProjectionHead
from tests.cloud_lambda.conftest import TinyCatalog, feature_event, smooth_image


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def random_head(dim_in: int = 16, dim_out: int = 6, seed: int = 0) -> ProjectionHead:
    rng = np.random.default_rng(seed)
    return ProjectionHead(rng.standard_normal((dim_in, dim_out)).astype(np.float32), rng.standard_normal(dim_in) * 0.01)


def write_small(folder: Path, vectors: np.ndarray, head: ProjectionHead | None = None) -> Path:
    ids = [f"sku-{i}" for i in range(len(vectors))]
    records = [ItemRecord(id=i, model_id="m-fp32-00000000", title=i, image_url="") for i in ids]
    section = {"kind": "projection_head", "data_hash": "d" * 64} if head is not None else None
    return write_catalog(
        folder,
        model_id="m-fp32-00000000",
        dim=vectors.shape[1],
        input_size=32,
        ids=ids,
        vectors=vectors,
        records=records,
        index_kind="exact",
        index_params={},
        summary={},
        report_lines=[],
        head=head,
        adaptation=section,
    )


def test_the_head_is_stored_checked_and_projects_queries_and_catalog(tmp_path: Path) -> None:
    vectors = unit(np.random.default_rng(1).standard_normal((12, 16)))
    head = random_head()
    catalog = load_catalog(write_small(tmp_path / "idx", vectors, head))
    assert catalog.head is not None and catalog.head.sha256 == head.sha256
    assert catalog.manifest.adaptation["out_dim"] == 6 and catalog.manifest.dim == 16
    assert catalog.index.dim == 6  # the index holds projected vectors
    assert np.array_equal(np.load(tmp_path / "idx" / "vectors.npy"), vectors)  # the model's vectors are kept
    scores, items = search_items(catalog.index, catalog.owners, 1, vectors[7], 3, catalog.head)
    assert items[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_a_tampered_or_unannounced_head_is_refused_at_load(tmp_path: Path) -> None:
    vectors = unit(np.random.default_rng(2).standard_normal((5, 16)))
    folder = write_small(tmp_path / "idx", vectors, random_head())
    random_head(seed=9).save(folder)  # other weights under the same name
    with pytest.raises(CatalogError, match="differs from the manifest"):
        load_catalog(folder)
    plain = write_small(tmp_path / "plain", vectors)
    random_head().save(plain)
    with pytest.raises(CatalogError, match="no 'adaptation' section"):
        load_catalog(plain)


def test_an_adapted_catalog_loads_from_s3_with_its_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search container downloads only what a search needs — for an adapted catalog that includes head.npz
    (without it the index, in the head's space, cannot be searched)."""
    import boto3
    from moto import mock_aws

    from cloud_lambda.catalog.roots import S3Root
    from cloud_lambda.catalog.sources import upload_folder

    vectors = unit(np.random.default_rng(3).standard_normal((12, 16)))
    head = random_head()
    folder = write_small(tmp_path / "m-fp32-00000000", vectors, head)
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="cat")
        upload_folder(folder, "s3://cat/index/m-fp32-00000000", client)
        root = S3Root("s3://cat/index", client)
        catalog = load_catalog(root.local_folder("m-fp32-00000000"))
    assert catalog.head is not None and catalog.head.sha256 == head.sha256
    assert catalog.index.dim == head.out_dim and catalog.index.count == len(vectors)


def test_apply_head_rewrites_the_index_atomically_and_can_remove_it(tmp_path: Path) -> None:
    vectors = unit(np.random.default_rng(3).standard_normal((8, 16)))
    folder = write_small(tmp_path / "idx", vectors)
    head = random_head()
    apply_head(folder, head, {"kind": "projection_head", "data_hash": "x"})
    adapted = load_catalog(folder)
    assert adapted.head is not None and adapted.index.dim == 6 and (folder / HEAD_FILE).exists()
    apply_head(folder, None, None)
    plain = load_catalog(folder)
    assert plain.head is None and plain.index.dim == 16 and not (folder / HEAD_FILE).exists()
    assert plain.manifest.adaptation is None


def test_search_keeps_each_item_once_with_its_best_region_and_view() -> None:
    rng = np.random.default_rng(4)
    catalog = unit(rng.standard_normal((10 * 2, 16)))  # 10 items × 2 views
    owners = np.repeat(np.arange(10), 2)
    index = create_index("exact", 16)
    index.build(catalog)
    # Region 0 is noise, region 2 is item 6's second view: the frame's best region decides.
    regions = np.stack([unit(rng.standard_normal(16)), unit(rng.standard_normal(16)), catalog[13]])
    scores, items = search_items(index, owners, 2, regions, 5)
    assert items[0] == 6 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert len(set(items.tolist())) == 5 and list(scores) == sorted(scores, reverse=True)


def test_head_training_resumes_exactly_where_it_stopped() -> None:
    rng = np.random.default_rng(5)
    catalog = unit(rng.standard_normal((6, 24)))
    labels = np.repeat(np.arange(6), 5)
    views = unit(catalog[labels][:, None, :] + 0.3 * rng.standard_normal((30, 2, 24)))
    settings = HeadSettings(out_dim=8, epochs=4, batch=8)
    states: dict[int, HeadState] = {}
    straight, centres = train_head(views, labels, catalog, settings, lambda _loss, s: states.__setitem__(s.epoch, s))
    # Stopped after epoch 2, the state saved and read back as the checkpoint file holds it.
    saved = HeadState.from_arrays(states[2].arrays())
    resumed, resumed_centres = train_head(views, labels, catalog, settings, start=saved)
    np.testing.assert_allclose(resumed.weight, straight.weight, atol=1e-6)
    np.testing.assert_allclose(resumed_centres, centres, atol=1e-6)
    assert not np.allclose(states[2].weight, straight.weight)  # the last two epochs did change it


@pytest.fixture(scope="module")
def region_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny region model (default retrieval settings) and a folder of 6 distinct catalog images."""
    from model.testing import export_tiny_region_model

    root = tmp_path_factory.mktemp("adapt")
    model = export_tiny_region_model(root / "model", "int8")
    images = root / "images"
    images.mkdir()
    for seed in range(6):
        cv2.imwrite(str(images / f"item-{seed}.png"), smooth_image(100 + seed, (192, 144)))
    return model, images


def _cli(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser)
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def test_catalog_adapt_trains_records_and_resumes(
    region_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.adapt.pipeline as pipeline

    model, images = region_setup
    out = tmp_path / "index"
    run_index(IndexOptions(source=str(images), out=out, model=model, workers=0, progress=False))
    argv = ["adapt", str(out), "--source", str(images), "--model", str(model), "--views-per-item", "6"]
    assert _cli(*argv, "--epochs", "3", "--dim", "8", "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "| held-out training-style views |" in printed and "| camera views |" in printed
    manifest = read_manifest(out)
    section = manifest.adaptation
    assert section is not None and section["kind"] == "projection_head"
    assert section["items"] == 6 and section["out_dim"] == 8 and len(section["data_hash"]) == 64
    assert section["settings"]["views_per_item"] == 6 and section["settings"]["head"]["epochs"] == 3
    assert section["model_id"] == manifest.model_id
    catalog = load_catalog(out)
    assert catalog.head is not None and catalog.head.sha256 == section["head_sha256"]

    # A second run finds every item's training vectors in the work dir: no training view is made again (the
    # held-out views of the before/after table come from another seed stream and are always made).
    made: list[int] = []
    real = pipeline.item_views

    def counting(images: list[np.ndarray], item: int, count: int, seed: int) -> list[np.ndarray]:
        if seed < pipeline.HOLDOUT_SEED_OFFSET:
            made.append(item)
        return real(images, item, count, seed)

    monkeypatch.setattr(pipeline, "item_views", counting)
    assert _cli(*argv, "--epochs", "3", "--dim", "8", "--no-progress") == 0
    assert made == []
    assert read_manifest(out).adaptation["head_sha256"] == section["head_sha256"]  # same data, same head

    # Items added later: a re-index keeps the head and projects the new item without retraining.
    cv2.imwrite(str(images / "item-new.png"), smooth_image(777, (192, 144)))
    try:
        run_index(IndexOptions(source=str(images), out=out, model=model, workers=0, progress=False))
        grown = load_catalog(out)
        assert grown.head is not None and grown.head.sha256 == section["head_sha256"] and len(grown.ids) == 7
        new = grown.ids.index("item-new")
        raw = np.load(out / "vectors.npy")
        _, items = search_items(grown.index, grown.owners, 1, raw[new], 1, grown.head)
        assert items[0] == new
    finally:
        (images / "item-new.png").unlink()

    assert _cli("adapt", str(out), "--source", "x", "--model", str(model), "--remove") == 0
    assert load_catalog(out).head is None


def test_catalog_adapt_refuses_another_model(region_setup: tuple[Path, Path], tmp_path: Path, tiny_model: Path) -> None:
    model, images = region_setup
    out = tmp_path / "index"
    run_index(IndexOptions(source=str(images), out=out, model=model, workers=0, progress=False))
    assert _cli("adapt", str(out), "--source", str(images), "--model", str(tiny_model)) == 2
    assert read_manifest(out).adaptation is None
    shutil.rmtree(out)


def test_catalog_adapt_on_an_index_root_adapts_that_models_folder(
    region_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from model.sidecar import read_sidecar

    model, images = region_setup
    root = tmp_path / "root"
    model_id = read_sidecar(model).model_id
    work = root / ".work" / model_id  # as `catalog index --root` does
    run_index(
        IndexOptions(source=str(images), out=root / model_id, model=model, workers=0, progress=False, work_dir=work)
    )
    argv = ["--source", str(images), "--model", str(model), "--views-per-item", "2", "--epochs", "1", "--no-progress"]
    assert _cli("adapt", str(root), *argv, "--dim", "4") == 0
    assert read_manifest(root / model_id).adaptation is not None
    # The work dir sits with the indexer's journals, never beside the index folders the search lists.
    assert (root / ".work" / f"{model_id}.adapt").is_dir()
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [model_id]
    assert _cli("adapt", str(tmp_path / "no-such-root"), *argv) == 2


def test_the_search_service_projects_device_messages_through_an_adapted_catalogs_head(
    tmp_path: Path, tiny_catalog: TinyCatalog, cloud_settings: CloudSettings
) -> None:
    """A camera's message against an adapted catalog: the service projects it with the catalog's head, so a
    frame equal to an item's catalog vector finds that item with score 1 (unprojected it could not be searched)."""
    head = random_head(dim_in=tiny_catalog.vectors.shape[1], dim_out=8, seed=5)
    catalog = load_catalog(tiny_catalog.folder)
    write_catalog(
        tmp_path / "adapted",
        model_id=tiny_catalog.model_id,
        dim=catalog.manifest.dim,
        input_size=catalog.manifest.input_size,
        ids=tiny_catalog.ids,
        vectors=tiny_catalog.vectors,
        records=[ItemRecord(id=i, model_id=tiny_catalog.model_id, title=i, image_url="") for i in tiny_catalog.ids],
        index_kind="exact",
        index_params={},
        summary={},
        report_lines=[],
        head=head,
        adaptation={"kind": "projection_head", "data_hash": "d" * 64},
    )
    service = SearchService(cloud_settings.model_copy(update={"index_dir": str(tmp_path / "adapted")}))
    try:
        result = service.handle_feature_event(feature_event(tiny_catalog.vectors[7], tiny_catalog.model_id, seq=3))
        assert result["status"] == "accepted" and result["top"] == "item-007", result
        best = service.matches.latest("cam-01", 1)[0]["matches"][0]
        assert best["id"] == "item-007" and best["score"] == pytest.approx(1.0, abs=1e-4)
    finally:
        service.metadata.close()
