"""The default retrieval settings (regional GeM + centre crop) round-trip: export → sidecar → index → search.

Uses the real exported EfficientNet-Lite0 int8 (the ``exported_models`` fixture, cached in ``.cache/models``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.catalog.layout import load_catalog
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.wire import FeatureMessage, encode
from model.data.photos import load_photos
from model.eval.heldup.views import held_up_view, load_backgrounds
from model.export.api import is_valid_export
from model.featurizer import Featurizer
from model.retrieval.catalog_views import CatalogViews
from model.retrieval.pooling import RETRIEVAL_METADATA_KEY
from model.retrieval.query_regions import NO_REGIONS
from model.retrieval.settings import (
    DEFAULT_POOLING,
    DEFAULT_QUERY_REGIONS,
    effective_roi,
    manifest_section,
    query_regions_of,
)
from model.sidecar import read_sidecar
from simulator.stack.processes import RedisProcess


def test_default_settings_round_trip_export_sidecar_index_search(
    exported_models: dict[str, Path], tmp_path: Path, redis_server: RedisProcess
) -> None:
    model = exported_models["int8"]
    sidecar = read_sidecar(model)
    # Export: the settings are in the sidecar and stamped in the file itself (so in its hash, so in its id).
    assert sidecar.pooling == DEFAULT_POOLING == "rgem"
    assert query_regions_of(sidecar) == DEFAULT_QUERY_REGIONS
    stamped = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    assert json.loads(stamped[RETRIEVAL_METADATA_KEY]) == {
        "pooling": "rgem",
        "query_regions": DEFAULT_QUERY_REGIONS.model_dump(mode="json"),
    }
    assert not is_valid_export(model, sidecar.backbone, "int8", "avg", NO_REGIONS)  # other settings: re-export

    # Index: several views per item, settings recorded in the manifest.
    root = tmp_path / "photos"
    root.mkdir()
    images = {}
    for name, image in load_photos(6):
        stem = name.split(":", 1)[1]
        cv2.imwrite(str(root / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images[stem] = image
    views = CatalogViews(scales=(0.7,))
    out = tmp_path / "index"
    options = IndexOptions(source=str(root), out=out, model=model, workers=0, progress=False, views=views)
    fz = Featurizer(model, threads=1)
    run_index(options, featurizer=fz)
    catalog = load_catalog(out)
    assert catalog.manifest.retrieval == manifest_section(sidecar, views)
    assert catalog.manifest.retrieval["pooling"] == "rgem"
    assert catalog.index.count == 2 * len(images)

    # Search: a device frame featurized the device's way (the model's crop) finds the held-up item once.
    settings = CloudSettings.build(
        index_dir=str(out), redis_url=redis_server.url, redis_timeout_s=1.0, photo_model=str(model), min_score=-1.0
    )
    service = SearchService(settings)
    target = sorted(images)[2]
    frame = held_up_view(images[target], load_backgrounds(), np.random.default_rng(3))
    roi = effective_roi(fz.sidecar, None)
    assert roi is not None
    message = FeatureMessage(
        device_id="cam-09", seq=1, ts=time.time(), model_id=fz.model_id, vector=fz.featurize_frame(frame, roi)
    )
    result = service.handle_feature_payload("visualsearch/cam-09/features", encode(message))
    assert result["status"] == "accepted", result
    matches = service.matches.latest("cam-09")[0]["matches"]
    assert len({m["id"] for m in matches}) == len(matches) == 5
    assert target in [m["id"] for m in matches[:2]]  # a held-up part among 6 photos (recall@1 is ~0.85)
    # Photo search: same model, same crop, settings checked against the manifest at load.
    _, data = cv2.imencode(".jpg", images[target])
    assert service.search_photo(data.tobytes(), k=3)["matches"][0]["id"] == target


@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_every_default_variant_carries_the_same_settings(exported_models: dict[str, Path], variant: str) -> None:
    sidecar = read_sidecar(exported_models[variant])
    assert sidecar.pooling == DEFAULT_POOLING and query_regions_of(sidecar) == DEFAULT_QUERY_REGIONS
