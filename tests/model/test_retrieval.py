"""Held-up-object matching: views, pooling in the graph, multi-view aggregation, query regions,
settings recorded in sidecar/manifest and refused when they differ."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from model.backbones.base import BackboneSpec
from model.eval.heldup.evaluate import item_scores
from model.eval.heldup.views import HeldUpParams, held_up_view, load_backgrounds
from model.export.graph import FeaturizerGraph, export_onnx
from model.prepare import prepare_frame
from model.retrieval.catalog_views import (
    CatalogViews,
    aggregate_max,
    catalog_views,
    combine_rows,
    oversample,
    parse_views,
    view_rois,
)
from model.retrieval.pooling import POOLINGS, pool_map, rmac_boxes, stamp_retrieval
from model.retrieval.query_regions import QueryRegions, combine, prepare_regions, propose, saliency_roi
from model.retrieval.regions import SINGLE_REGION
from model.retrieval.settings import (
    SettingsMismatch,
    check_compatible,
    default_catalog_views,
    device_roi,
    manifest_section,
    query_regions_of,
    regions_of,
)
from model.sidecar import file_sha256, make_model_id, read_sidecar, write_sidecar
from model.testing import build_tiny_model
from simulator.stack.processes import RedisProcess

SPEC = BackboneSpec(
    name="tiny-conv",
    dim=8,
    input_size=32,
    color_order="RGB",
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    weights_source="random",
    weights_license="n/a",
)


def _photo(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


# --- held-up views -----------------------------------------------------------------------------------------
def test_held_up_views_are_deterministic_and_framed() -> None:
    item, backgrounds = _photo(1), [_photo(2, 240, 320)]
    params = HeldUpParams(frame_w=320, frame_h=240)
    first = held_up_view(item, backgrounds, np.random.default_rng(7), params)
    again = held_up_view(item, backgrounds, np.random.default_rng(7), params)
    other = held_up_view(item, backgrounds, np.random.default_rng(8), params)
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_held_up_view_refuses_non_bgr() -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        held_up_view(np.zeros((10, 10), np.uint8), [_photo(2)], np.random.default_rng(0))


def test_backgrounds_are_not_catalog_photos() -> None:
    from model.data.photos import load_photos

    catalog = {image.tobytes()[:4096] for _, image in load_photos()}
    assert all(bg.tobytes()[:4096] not in catalog for bg in load_backgrounds())


# --- pooling in the graph ----------------------------------------------------------------------------------
class _TinyBackbone(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, SPEC.dim, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_exports_to_onnx_with_torch_parity(tmp_path: Path, pooling: str) -> None:
    graph = FeaturizerGraph(_TinyBackbone(), SPEC, pooling).eval()
    path = export_onnx(graph, tmp_path / f"{pooling}.onnx", SPEC.input_size)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = graph(torch.from_numpy(frames)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": frames})[0]
    assert got.shape == (3, SPEC.dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_poolings_differ_and_regions_cover_the_map() -> None:
    fmap = torch.rand(2, 4, 7, 7)
    outs = {p: pool_map(fmap, p) for p in POOLINGS}
    assert all(v.shape == (2, 4) for v in outs.values())
    assert not torch.allclose(outs["avg"], outs["rgem"])
    boxes = rmac_boxes(7, 7)
    assert len(boxes) == 1 + 4 + 9 and boxes[0] == (0, 7, 0, 7)
    covered = np.zeros((7, 7), bool)
    for y0, y1, x0, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_map(fmap, "median")


def test_pooling_and_retrieval_settings_change_the_model_id(tmp_path: Path) -> None:
    """Device and index can only agree by model id: a different pooling or region setting must change it."""
    ids = set()
    for pooling in ("avg", "rgem"):
        path = export_onnx(FeaturizerGraph(_TinyBackbone(), SPEC, pooling).eval(), tmp_path / f"{pooling}.onnx", 32)
        ids.add(make_model_id(SPEC.name, "fp32", file_sha256(path)))
    path = tmp_path / "rgem.onnx"
    stamp_retrieval(path, {"pooling": "rgem", "query_regions": QueryRegions().model_dump(mode="json")})
    ids.add(make_model_id(SPEC.name, "fp32", file_sha256(path)))
    centre = QueryRegions(kind="centre", scales=(0.7,), combine="first")
    stamp_retrieval(path, {"pooling": "rgem", "query_regions": centre.model_dump(mode="json")})
    ids.add(make_model_id(SPEC.name, "fp32", file_sha256(path)))
    assert len(ids) == 4


# --- catalog views and per-item aggregation -------------------------------------------------------------
def test_catalog_views_count_and_rois_inside_the_image() -> None:
    views = CatalogViews(scales=(0.5, 0.7), grid=2, flip=True)
    assert views.scales == (0.7, 0.5)
    assert views.count == (1 + 2 * 4) * 2
    images = catalog_views(_photo(3), views)
    assert len(images) == views.count
    assert np.array_equal(images[views.count // 2], images[0][:, ::-1])
    for roi in view_rois(160, 120, views):
        assert roi.x + roi.w <= 1 + 1e-9 and roi.y + roi.h <= 1 + 1e-9
    with pytest.raises(ValueError, match="scale"):
        CatalogViews(scales=(1.5,))


def test_mean_views_are_one_row_per_item_the_normalized_mean_of_its_views() -> None:
    views = parse_views("full,0.6,mean")
    assert (views.full, views.scales, views.combine) == (True, (0.6,), "mean")
    assert (views.images, views.count, views.is_single) == (2, 1, True)
    assert views.describe() == "mean of 2 views (full, crops 0.6 ×1), 1 row"
    assert len(catalog_views(_photo(4), views)) == 2
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)  # 3 items × 2 views, each item's views together
    rows = combine_rows(vectors, views)
    expected = vectors.reshape(3, 2, 8).mean(axis=1)
    assert rows.shape == (3, 8)
    assert np.allclose(rows, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert combine_rows(vectors, parse_views("full,0.6")) is vectors  # rows: every view its own row
    with pytest.raises(ValueError, match="at least two"):
        parse_views("full,mean")


def test_default_catalog_views_follow_the_model_crop(tmp_path: Path) -> None:
    cropped = _with_regions(tmp_path, QueryRegions(kind="centre", scales=(0.6,), combine="first"), "crop")
    assert default_catalog_views(read_sidecar(cropped)) == CatalogViews(full=True, scales=(0.6,), combine="mean")
    whole = _with_regions(tmp_path, QueryRegions(), "whole")
    assert default_catalog_views(read_sidecar(whole)).is_single
    assert default_catalog_views(read_sidecar(whole)).images == 1


def test_aggregate_max_returns_each_item_once_with_its_best_score() -> None:
    owners = [0, 0, 0, 1, 1, 2]
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, -np.inf]], dtype=np.float32)
    positions = np.array([[1, 0, 3, 2, 4, -1]])
    items_scores, items = aggregate_max(scores, positions, owners, k=3)
    assert items.tolist() == [[0, 1, -1]]
    assert items_scores[0, :2].tolist() == pytest.approx([0.9, 0.7])
    sim = np.array([[0.1, 0.9, 0.3, 0.2, 0.95, 0.0]], dtype=np.float32)
    assert item_scores(sim, owners, 3).tolist() == [pytest.approx([0.9, 0.95, 0.0])]
    assert oversample(5, CatalogViews(flip=True), 1000) == 10


def test_multi_view_catalog_round_trip_through_the_index(tiny_model: Path, tmp_path: Path) -> None:
    """Index several views per item in the cloud's exact index, search, fold: each item once, best score."""
    from cloud_lambda.index import create_index
    from model.featurizer import Featurizer

    fz = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    photos = [_photo(seed) for seed in range(6)]
    views = CatalogViews(scales=(0.6,), grid=2, flip=True)
    rows, owners = [], []
    for item, photo in enumerate(photos):
        for view in catalog_views(photo, views):
            rows.append(fz.featurize_frame(view))
            owners.append(item)
    index = create_index("exact", fz.dim)
    index.build(np.stack(rows))
    index.save(tmp_path)
    query = fz.featurize_frame(photos[4][10:100, 20:140])
    k = 3
    scores, positions = index.search(query[None], oversample(k, views, index.count))
    best, items = aggregate_max(scores, positions, owners, k)
    assert len(set(items[0].tolist())) == k
    assert items[0, 0] == 4
    sims = np.stack(rows) @ query
    for item, score in zip(items[0], best[0], strict=True):
        assert score == pytest.approx(max(s for s, o in zip(sims, owners, strict=True) if o == item), abs=1e-5)


# --- query regions -----------------------------------------------------------------------------------------
def test_query_regions_batches_and_combination() -> None:
    frame = _photo(5, 480, 640)
    centre = QueryRegions(kind="centre", scales=(1.0, 0.6))
    assert prepare_regions(frame, 32, centre).shape == (2, 32, 32, 3)
    assert QueryRegions(kind="centre", scales=(1.0, 0.6), combine="first").batch == 1
    sal = saliency_roi(frame)
    assert sal.x >= 0 and sal.x + sal.w <= 1 + 1e-9 and sal.y + sal.h <= 1 + 1e-9
    assert len(propose(frame, QueryRegions(kind="saliency"))) == 2
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(combine(vectors, centre), [2**-0.5, 2**-0.5], atol=1e-6)
    with pytest.raises(ValueError, match="scales"):
        QueryRegions(kind="centre", scales=(0.1,))


def test_device_roi_is_the_same_centre_crop_for_any_aspect_ratio() -> None:
    regions = QueryRegions(kind="centre", scales=(0.7,), combine="first")
    roi = device_roi(regions)
    assert roi is not None
    for h, w in ((720, 1280), (480, 640), (600, 600)):
        frame = _photo(9, h, w)
        via_roi = prepare_frame(frame, 64, roi).astype(int)
        via_regions = prepare_regions(frame, 64, regions)[0].astype(int)
        assert np.abs(via_roi - via_regions).mean() < 1.0
    assert device_roi(QueryRegions()) is None


# --- settings recorded and checked -----------------------------------------------------------------------
def _with_regions(tmp_path: Path, regions: QueryRegions, name: str) -> Path:
    path = build_tiny_model(tmp_path / f"{name}.onnx")
    stamp_retrieval(path, {"pooling": "avg", "query_regions": regions.model_dump(mode="json")})
    sidecar = read_sidecar(path, verify_hash=False)
    sha = file_sha256(path)
    extra = {"retrieval": {"query_regions": regions.model_dump(mode="json")}}
    write_sidecar(
        path,
        sidecar.model_copy(
            update={"sha256": sha, "model_id": make_model_id(sidecar.backbone, "fp32", sha), "extra": extra}
        ),
    )
    return path


def test_settings_round_trip_sidecar_to_manifest_and_mismatch_is_refused(tmp_path: Path) -> None:
    centre = QueryRegions(kind="centre", scales=(0.7,), combine="first")
    device_path = _with_regions(tmp_path, centre, "device")
    other_path = _with_regions(tmp_path, QueryRegions(), "other")
    device, other = read_sidecar(device_path), read_sidecar(other_path)
    assert query_regions_of(device) == centre
    section = manifest_section(device, CatalogViews(scales=(0.7,)))
    assert json.loads(json.dumps(section))["catalog_views"]["scales"] == [0.7]
    check_compatible(device, device.model_id, section)  # the model the index was built with: accepted
    with pytest.raises(SettingsMismatch, match="differs from the index's model"):
        check_compatible(other, device.model_id, section)
    # Same model id but a manifest that says other regions (a hand-edited sidecar): named in the error.
    edited = manifest_section(other)
    with pytest.raises(SettingsMismatch, match="'query_regions' differs"):
        check_compatible(device, device.model_id, edited)


def test_a_bad_recorded_setting_is_refused_naming_its_key_and_none_recorded_is_the_whole_frame(tmp_path: Path) -> None:
    sidecar = read_sidecar(_with_regions(tmp_path, QueryRegions(), "plain"))
    bare = sidecar.model_copy(update={"extra": {}})
    assert query_regions_of(bare) == QueryRegions() and regions_of(bare) == SINGLE_REGION
    for key, bad in (("query_regions", {"kind": "everywhere"}), ("regions", {"whole": "often"})):
        edited = sidecar.model_copy(update={"extra": {"retrieval": {key: bad}}})
        with pytest.raises(SettingsMismatch, match=rf"extra\.retrieval\.{key}\.(kind|whole):"):
            query_regions_of(edited) if key == "query_regions" else regions_of(edited)


def test_search_service_refuses_a_device_with_other_settings(tmp_path: Path, redis_server: RedisProcess) -> None:
    """A device whose model has other query regions (so another model id) is refused by the real search service."""
    from cloud_lambda.catalog.layout import write_catalog
    from cloud_lambda.metadata.base import ItemRecord
    from cloud_lambda.search.service import SearchService
    from cloud_lambda.settings import CloudSettings
    from model.contracts.wire import FeatureMessage, encode
    from model.featurizer import Featurizer

    index_model = Featurizer(_with_regions(tmp_path, QueryRegions(), "index"), backend="onnxruntime")
    device_model = Featurizer(
        _with_regions(tmp_path, QueryRegions(kind="centre", scales=(0.7,), combine="first"), "device"),
        backend="onnxruntime",
    )
    assert index_model.model_id != device_model.model_id
    photos = [_photo(seed) for seed in range(4)]
    folder = tmp_path / "index"
    write_catalog(
        folder,
        model_id=index_model.model_id,
        dim=index_model.dim,
        input_size=index_model.input_size,
        ids=[f"item-{i}" for i in range(4)],
        vectors=np.stack([index_model.featurize_frame(p) for p in photos]),
        records=[ItemRecord(id=f"item-{i}", model_id=index_model.model_id, title="", image_url="") for i in range(4)],
        index_kind="exact",
        index_params={},
        summary={},
        report_lines=[],
    )
    settings = CloudSettings.build(index_dir=str(folder), redis_url=redis_server.url, redis_timeout_s=1.0)
    service = SearchService(settings)
    message = FeatureMessage(
        device_id="cam-01",
        seq=1,
        ts=time.time(),
        model_id=device_model.model_id,
        vector=device_model.featurize_frame(photos[0]),
    )
    result = service.handle_feature_payload("visualsearch/cam-01/features", encode(message))
    assert result["status"] == "rejected" and result["reason"] == "no_index_for_model"
    assert device_model.model_id in result["message"]
    accepted = FeatureMessage(
        device_id="cam-01",
        seq=2,
        ts=time.time(),
        model_id=index_model.model_id,
        vector=index_model.featurize_frame(photos[2]),
    )
    result = service.handle_feature_payload("visualsearch/cam-01/features", encode(accepted))
    assert result["status"] == "accepted" and result["top"] == "item-2"
