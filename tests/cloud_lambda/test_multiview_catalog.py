"""Several views per catalog item through the real indexer, the real search service and a real redis-server.

Each item must come back once, with the score of its best view; the index manifest records the retrieval
settings, and a model whose settings differ from the index's is refused naming what differs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.indexer import IndexingError, IndexOptions, Shard, run_index
from cloud_lambda.catalog.layout import MANIFEST, OWNERS, VECTORS, CatalogError, load_catalog
from cloud_lambda.catalog.merge import merge_catalogs
from cloud_lambda.search.service import PhotoModelUnavailable, SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.wire import FeatureMessage, encode
from model.data.photos import load_photos
from model.featurizer import Featurizer
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews, parse_views
from model.retrieval.pooling import stamp_retrieval
from model.retrieval.query_regions import QueryRegions
from model.retrieval.settings import effective_roi, manifest_section
from model.sidecar import file_sha256, make_model_id, read_sidecar, write_sidecar
from model.testing import build_tiny_model
from simulator.stack.processes import RedisProcess

VIEWS = CatalogViews(scales=(0.6,), grid=2, flip=True)  # full + 4 crops, each also mirrored: 10 rows per item
CENTRE = QueryRegions(kind="centre", scales=(0.6,), combine="first")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("mv") / "photos"
    root.mkdir()
    images = {}
    for name, image in load_photos(8):
        stem = name.split(":", 1)[1]
        (root / f"{stem}.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
        images[stem] = image
    return root, images


def _model_with_regions(folder: Path, regions: QueryRegions, name: str) -> Path:
    """The tiny model with query regions stamped into the file (so into its id) and its sidecar, as export does."""
    path = build_tiny_model(folder / f"{name}.onnx")
    stamp_retrieval(path, {"pooling": "avg", "query_regions": regions.model_dump(mode="json")})
    sidecar = read_sidecar(path, verify_hash=False)
    sha = file_sha256(path)
    extra = {"retrieval": {"query_regions": regions.model_dump(mode="json")}}
    update = {"sha256": sha, "model_id": make_model_id(sidecar.backbone, "fp32", sha), "extra": extra}
    write_sidecar(path, sidecar.model_copy(update=update))
    return path


def _index(root: Path, out: Path, model: Path, views: CatalogViews, **kw: Any) -> None:
    options = IndexOptions(
        source=str(root), out=out, model=model, workers=0, batch_size=16, progress=False, views=views, **kw
    )
    run_index(options, featurizer=Featurizer(model, backend="onnxruntime", threads=1))


def test_multi_view_catalog_returns_each_item_once_with_its_best_view(
    photos: tuple[Path, dict[str, np.ndarray]], tiny_model: Path, tmp_path: Path, redis_server: RedisProcess
) -> None:
    root, images = photos
    out = tmp_path / "index"
    _index(root, out, tiny_model, VIEWS)
    catalog = load_catalog(out)
    fz = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    assert catalog.ids == sorted(images)
    assert catalog.index.count == VIEWS.count * len(images) == catalog.manifest.rows
    assert catalog.manifest.retrieval == manifest_section(fz.sidecar, VIEWS)
    assert catalog.views == VIEWS

    settings = CloudSettings.build(
        index_dir=str(out), redis_url=redis_server.url, redis_timeout_s=1.0, top_k=5, min_score=-1.0
    )
    service = SearchService(settings)
    target = sorted(images)[3]
    image = images[target]
    h, w = image.shape[:2]
    query = fz.featurize_frame(image[h // 4 : h - h // 8, w // 3 :])  # a part, as a camera would see it
    message = FeatureMessage(device_id="cam-01", seq=7, ts=time.time(), model_id=fz.model_id, vector=query)
    result = service.handle_feature_payload("visualsearch/cam-01/features", encode(message))
    assert result["status"] == "accepted" and result["top"] == target
    matches = service.matches.latest("cam-01")[0]["matches"]

    vectors = np.load(out / VECTORS)
    owners = np.load(out / OWNERS)
    sims = vectors @ query
    best = {item: float(sims[owners == pos].max()) for pos, item in enumerate(catalog.ids)}
    expected = sorted(best.items(), key=lambda pair: -pair[1])[:5]
    assert [m["id"] for m in matches] == [item for item, _ in expected]  # once each, best-first
    assert [m["score"] for m in matches] == pytest.approx([score for _, score in expected], abs=1e-4)
    # Unfolded, the best rows repeat items: the fold is what makes each item appear once.
    raw = owners[np.argsort(-sims)[:5]]
    assert len(set(raw.tolist())) < 5


def test_multi_view_shards_merge_to_the_single_run_and_resume_refuses_other_views(
    photos: tuple[Path, dict[str, np.ndarray]], tiny_model: Path, tmp_path: Path
) -> None:
    root, _ = photos
    views = CatalogViews(scales=(0.7,), flip=True)
    _index(root, tmp_path / "single", tiny_model, views)
    for i in range(2):
        _index(root, tmp_path / f"s{i}", tiny_model, views, shard=Shard(i, 2))
    merge_catalogs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    single, merged = load_catalog(tmp_path / "single"), load_catalog(tmp_path / "merged")
    assert merged.ids == single.ids and merged.manifest.retrieval == single.manifest.retrieval
    np.testing.assert_array_equal(merged.owners, single.owners)
    np.testing.assert_allclose(np.load(tmp_path / "merged" / VECTORS), np.load(tmp_path / "single" / VECTORS))
    # A shard of other views cannot be merged in, and a work dir of other views is not resumed.
    _index(root, tmp_path / "other", tiny_model, SINGLE_VIEW, shard=Shard(1, 2))
    with pytest.raises(CatalogError, match="retrieval settings"):
        merge_catalogs([tmp_path / "s0", tmp_path / "other"], tmp_path / "bad")
    with pytest.raises(IndexingError, match="4 views"):
        _index(root, tmp_path / "x", tiny_model, SINGLE_VIEW, work_dir=tmp_path / "single.work")


def test_a_manifest_whose_views_disagree_with_the_rows_is_refused(
    photos: tuple[Path, dict[str, np.ndarray]], tiny_model: Path, tmp_path: Path
) -> None:
    root, _ = photos
    out = tmp_path / "index"
    _index(root, out, tiny_model, CatalogViews(scales=(0.7,)))
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["retrieval"]["catalog_views"]["flip"] = True
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CatalogError, match="4 view"):
        load_catalog(out)


def test_parse_catalog_views() -> None:
    assert parse_views("1") == SINGLE_VIEW
    assert parse_views("full,0.7,0.5").count == 3
    assert parse_views("full, 0.7, grid=2, flip") == CatalogViews(scales=(0.7,), grid=2, flip=True)
    with pytest.raises(ValueError, match="'bogus'"):
        parse_views("full,bogus")
    with pytest.raises(ValueError, match="scale"):
        parse_views("full,1.5")


def test_photo_search_uses_the_models_crop_and_refuses_other_settings(
    photos: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, redis_server: RedisProcess
) -> None:
    root, images = photos
    model = _model_with_regions(tmp_path, CENTRE, "centre")
    out = tmp_path / "index"
    _index(root, out, model, SINGLE_VIEW)
    base = {"index_dir": str(out), "redis_url": redis_server.url, "redis_timeout_s": 1.0, "min_score": -1.0}
    service = SearchService(CloudSettings.build(photo_model=str(model), **base))
    target = sorted(images)[5]
    _, data = cv2.imencode(".png", images[target])
    result = service.search_photo(data.tobytes(), k=3)
    fz = Featurizer(model, backend="onnxruntime", threads=1)
    roi = effective_roi(fz.sidecar, None)
    assert roi is not None and roi.w == pytest.approx(0.6)
    # The photo is featurized through the model's centre crop, exactly as a device frame would be.
    cropped, whole = fz.featurize_frame(images[target], roi), fz.featurize_frame(images[target])
    row = np.load(out / VECTORS)[sorted(images).index(target)]
    assert result["matches"][0]["id"] == target
    assert result["matches"][0]["score"] == pytest.approx(float(row @ cropped), abs=1e-4)
    assert abs(float(row @ cropped) - float(row @ whole)) > 1e-3

    other = _model_with_regions(tmp_path, QueryRegions(), "whole")
    with pytest.raises(PhotoModelUnavailable, match="no index for model"):
        SearchService(CloudSettings.build(photo_model=str(other), **base)).search_photo(data.tobytes())
    # Same model id, but an index recorded for other query regions (e.g. a hand-edited manifest): named.
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["retrieval"]["query_regions"]["scales"] = [0.5]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PhotoModelUnavailable, match="'query_regions' differs"):
        SearchService(CloudSettings.build(photo_model=str(model), **base)).search_photo(data.tobytes())


def test_device_with_other_settings_is_refused_naming_the_indexs_settings(
    photos: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, redis_server: RedisProcess
) -> None:
    root, images = photos
    index_model = _model_with_regions(tmp_path, CENTRE, "index")
    device_model = _model_with_regions(tmp_path, QueryRegions(), "device")
    out = tmp_path / "index"
    _index(root, out, index_model, CatalogViews(scales=(0.7,)))
    service = SearchService(CloudSettings.build(index_dir=str(out), redis_url=redis_server.url, redis_timeout_s=1.0))
    device = Featurizer(device_model, backend="onnxruntime", threads=1)
    assert device.model_id != service.catalog.model_id  # other query regions: another file hash, another id
    vector = device.featurize_frame(images[sorted(images)[0]])
    message = FeatureMessage(device_id="cam-02", seq=1, ts=time.time(), model_id=device.model_id, vector=vector)
    result = service.handle_feature_payload("visualsearch/cam-02/features", encode(message))
    assert result["status"] == "rejected" and result["reason"] == "no_index_for_model"
    assert device.model_id in result["message"] and "query_regions" in result["message"]
    assert service.matches.latest("cam-02") == []
