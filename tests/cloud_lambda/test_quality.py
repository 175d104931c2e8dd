"""Retrieval quality with the real EfficientNet-Lite0 (int8): camera-like views find their catalog item.

The catalog is indexed by the real indexer from real photos; the query is a camera-like view (crop, tilt,
blur, exposure, JPEG) featurized the device's way, sent through the search handler into a real Redis.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.data.photos import load_photos
from model.data.views import camera_views
from model.featurizer import Featurizer
from tests.cloud_lambda.conftest import feature_event

PHOTOS = 24
VIEWS = 2


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    model = exported_models["int8"]
    featurizer = Featurizer(model, threads=2)
    root = tmp_path_factory.mktemp("real") / "photos"
    root.mkdir()
    photos = load_photos(PHOTOS)
    for name, image in photos:
        cv2.imwrite(str(root / f"{name.replace(':', '_')}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    out = root.parent / "index"
    run_index(
        IndexOptions(source=str(root), out=out, model=model, index_kind="hnsw", workers=1, progress=False),
        featurizer=featurizer,
    )
    return out, model, featurizer, photos


def test_camera_view_finds_its_item_first(real_catalog, redis_server):
    out, _, featurizer, photos = real_catalog
    service = SearchService(CloudSettings.build(index_dir=str(out), redis_url=redis_server.url, top_k=5))
    assert service.catalog.model_id == featurizer.model_id
    misses = []
    seq = 0
    for index, (name, image) in enumerate(photos):
        for view in camera_views(image, VIEWS, seed=100 + index, strength=0.8):
            seq += 1
            result = service.handle_feature_event(
                feature_event(featurizer.featurize_frame(view), featurizer.model_id, seq=seq)
            )
            assert result["status"] == "accepted"
            if result["top"] != name.replace(":", "_"):
                misses.append((name, result["top"]))
    print(f"top-1: {seq - len(misses)}/{seq} camera views found their item first; misses: {misses}")
    # Views are hard (up to 40 % cropped, tilted, blurred, re-exposed): allow a few, report which.
    assert len(misses) <= 0.1 * seq, misses
    latest = service.matches.latest("cam-01", 1)[0]
    assert latest["seq"] == seq and latest["model_id"] == featurizer.model_id
