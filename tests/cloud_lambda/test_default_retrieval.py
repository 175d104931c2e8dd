"""The default retrieval settings round-trip: export → sidecar → index → catalog adaptation → device loop →
wire version 2 → search; and a device that still sends version 1 with the same model keeps getting matches.

Uses the real exported EfficientNet-Lite0 int8 (the ``exported_models`` fixture, cached in ``.cache/models``)
on real photos: what ships, the way it ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from cloud_lambda.catalog.adapt import adapt_index
from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.catalog.layout import load_catalog, read_vectors
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from edge_component.sources import FrameSource
from edge_component.sources.memory import MemoryReader
from model.adapt.head import HeadSettings
from model.adapt.pipeline import AdaptSettings, Vectorizer
from model.contracts.wire import MAX_V2_BYTES, decode
from model.data.photos import load_photos
from model.eval.heldup.views import held_up_view, load_backgrounds, placement_params
from model.export.api import is_valid_export
from model.featurizer import Featurizer
from model.retrieval.pooling import RETRIEVAL_METADATA_KEY
from model.retrieval.query_regions import NO_REGIONS
from model.retrieval.settings import (
    DEFAULT_POOLING,
    DEFAULT_QUERY_REGIONS,
    DEFAULT_REGIONS,
    default_catalog_views,
    device_roi,
    manifest_section,
    query_regions_of,
    regions_of,
)
from model.sidecar import read_sidecar
from simulator.stack.processes import RedisProcess
from tests.edge_component.helpers import Running, config

ITEMS = 8


@pytest.fixture(scope="module")
def catalog_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("photos")
    images = {}
    for name, image in load_photos(ITEMS):
        stem = name.split(":", 1)[1]
        cv2.imwrite(str(root / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images[stem] = image
    return root, images


def test_default_settings_are_in_the_sidecar_and_stamped_in_the_file(exported_models: dict[str, Path]) -> None:
    model = exported_models["int8"]
    sidecar = read_sidecar(model)
    assert sidecar.pooling == DEFAULT_POOLING
    assert query_regions_of(sidecar) == DEFAULT_QUERY_REGIONS and regions_of(sidecar) == DEFAULT_REGIONS
    stamped = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    expected = {"pooling": DEFAULT_POOLING, "query_regions": DEFAULT_QUERY_REGIONS.model_dump(mode="json")}
    if not DEFAULT_REGIONS.is_single:
        expected["regions"] = DEFAULT_REGIONS.model_dump(mode="json")
    assert json.loads(stamped[RETRIEVAL_METADATA_KEY]) == expected
    assert not is_valid_export(model, sidecar.backbone, "int8", DEFAULT_POOLING, NO_REGIONS)  # other: re-export


@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_every_default_variant_carries_the_same_settings(exported_models: dict[str, Path], variant: str) -> None:
    sidecar = read_sidecar(exported_models[variant])
    assert sidecar.pooling == DEFAULT_POOLING
    assert query_regions_of(sidecar) == DEFAULT_QUERY_REGIONS and regions_of(sidecar) == DEFAULT_REGIONS


def _device_payloads(model: Path, frames: list[np.ndarray], tmp_path: Path, wire_version: int) -> list[bytes]:
    """What the device loop publishes for ``frames`` (file publisher: the exact payload bytes)."""
    out = tmp_path / f"published-v{wire_version}.jsonl"
    cfg = config(
        "cam-09",
        source={"kind": "video", "path": "unused.avi", "realtime": False},
        publish={"kind": "file", "file_path": str(out), "wire_version": wire_version},
    )
    run = Running(cfg, model, source=FrameSource(MemoryReader(frames)))
    run.join(120)
    run.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return [json.dumps(line["payload"]).encode() for line in lines if line["topic"].endswith("/features")]


def test_default_settings_round_trip_through_index_adaptation_device_wire_and_search(
    exported_models: dict[str, Path],
    catalog_folder: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    redis_server: RedisProcess,
) -> None:
    model = exported_models["int8"]
    root, images = catalog_folder
    sidecar = read_sidecar(model)

    # Index: the settings recorded in the manifest; each item's one row is the normalized mean of the whole
    # photo's vector and the device crop's (the default catalog views of a model with a centre crop).
    out = tmp_path / "index"
    run_index(IndexOptions(source=str(root), out=out, model=model, workers=0, progress=False))
    views = default_catalog_views(sidecar)
    assert views.combine == "mean" and views.scales == DEFAULT_QUERY_REGIONS.scales
    assert load_catalog(out).manifest.retrieval == manifest_section(sidecar, views)
    featurizer = Featurizer(model, backend="onnxruntime", threads=1)
    ids = json.loads((out / "ids.json").read_text())
    stored = read_vectors(out)
    assert stored.shape == (len(ids), sidecar.dim)
    decoded = cv2.imread(str(root / f"{ids[2]}.jpg"))
    whole = featurizer.featurize_frame(decoded)
    pair = whole + featurizer.featurize_frame(decoded, device_roi(DEFAULT_QUERY_REGIONS))
    pair /= np.linalg.norm(pair)
    # (The indexer decodes JPEGs at reduced size, hence a cosine rather than equality.)
    assert float(stored[2] @ pair) > 0.995 and float(stored[2] @ pair) > float(stored[2] @ whole) + 0.005
    # Adaptation trains on these vectors (the crop cut as the indexer cuts it: a pixel of rounding apart).
    vectorize = Vectorizer(featurizer, device_roi(DEFAULT_QUERY_REGIONS), views=views)
    assert float(vectorize.catalog([decoded])[0] @ pair) > 0.995
    assert float(vectorize.catalog([decoded])[0] @ stored[2]) > float(vectorize.catalog([decoded])[0] @ whole)

    # Adaptation: a head learned from the catalog's own images, recorded and checked at load.
    settings = AdaptSettings(views_per_item=12, holdout_views=2, head=HeadSettings(epochs=8))
    summary = adapt_index(out, str(root), model, settings=settings, work_dir=tmp_path / "work", progress=False)
    catalog = load_catalog(out)
    assert catalog.head is not None and catalog.manifest.adaptation["data_hash"] == summary["data_hash"]
    assert catalog.manifest.adaptation["model_id"] == sidecar.model_id == catalog.model_id

    # Device: the loop featurizes held-up frames the model's way and sends every region in one message
    # (version 2 for a region model, else version 1).
    target = sorted(images)[3]
    rng = np.random.default_rng(3)
    frames = [held_up_view(images[target], load_backgrounds(), rng, placement_params("anywhere")) for _ in range(4)]
    frames += [images[target]]  # and the catalog photo itself, as a camera would see a print of it
    v2 = _device_payloads(model, frames, tmp_path, 2)
    assert len(v2) == len(frames)
    for payload in v2:
        message = decode(payload)
        assert message.version == (1 if DEFAULT_REGIONS.is_single else 2)
        assert message.vectors.shape == (DEFAULT_REGIONS.count, sidecar.dim) and len(payload) <= MAX_V2_BYTES

    # Search: the service projects the regions through the head and keeps each item once.
    service = SearchService(
        CloudSettings.build(index_dir=str(out), redis_url=redis_server.url, redis_timeout_s=1.0, min_score=-1.0)
    )
    for payload in v2:
        assert service.handle_feature_payload("visualsearch/cam-09/features", payload)["status"] == "accepted"
    records = service.matches.latest("cam-09", len(v2))
    tops = [record["matches"][0]["id"] for record in records]
    assert all(len({m["id"] for m in r["matches"]}) == len(r["matches"]) == 5 for r in records)
    assert tops.count(target) >= len(v2) - 1, tops  # held up anywhere in the frame, among 8 photos

    # A device on the previous wire version (same model, whole-frame vector only) still gets matches.
    v1 = _device_payloads(model, frames[-1:], tmp_path, 1)
    assert decode(v1[0]).version == 1
    result = service.handle_feature_payload("visualsearch/cam-09/features", v1[0])
    assert result["status"] == "accepted" and result["top"] == target
    service.metadata.close()


def test_photo_search_uses_the_model_settings_and_the_head(
    exported_models: dict[str, Path],
    catalog_folder: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    redis_server: RedisProcess,
) -> None:
    model = exported_models["int8"]
    root, images = catalog_folder
    out = tmp_path / "index"
    run_index(IndexOptions(source=str(root), out=out, model=model, workers=0, progress=False))
    settings = AdaptSettings(views_per_item=8, holdout_views=1, head=HeadSettings(epochs=6))
    adapt_index(out, str(root), model, settings=settings, work_dir=tmp_path / "work", progress=False)
    service = SearchService(
        CloudSettings.build(
            index_dir=str(out), redis_url=redis_server.url, redis_timeout_s=1.0, photo_model=str(model), min_score=-1.0
        )
    )
    target = sorted(images)[5]
    _, data = cv2.imencode(".jpg", images[target])
    assert service.search_photo(data.tobytes(), k=3)["matches"][0]["id"] == target
    assert Featurizer(model, threads=1).regions == DEFAULT_REGIONS
    service.metadata.close()
