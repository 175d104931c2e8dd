"""Cloud fixtures: a small catalog featurized with the tiny model, a search service on a real redis-server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.layout import write_catalog
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.wire import FeatureMessage, encode
from model.featurizer import Featurizer
from simulator.stack.processes import RedisProcess


def smooth_image(seed: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A distinct, low-frequency colour picture (block averaging in the tiny model keeps it apart)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


@dataclass
class TinyCatalog:
    folder: Path
    model_id: str
    ids: list[str]
    vectors: np.ndarray
    images: list[np.ndarray]


@pytest.fixture(scope="session")
def tiny_featurizer(tiny_model: Path) -> Featurizer:
    return Featurizer(tiny_model, backend="onnxruntime", threads=1)


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory, tiny_featurizer: Featurizer) -> TinyCatalog:
    images = [smooth_image(seed) for seed in range(40)]
    ids = [f"item-{i:03d}" for i in range(len(images))]
    vectors = np.stack([tiny_featurizer.featurize_frame(img) for img in images])
    folder = tmp_path_factory.mktemp("catalog") / "index"
    records = [
        ItemRecord(
            id=item_id,
            model_id=tiny_featurizer.model_id,
            title=f'Item {i}\'s "title"',  # quotes and an apostrophe: the old sample broke on these
            image_url=f"https://example.test/{item_id}.jpg",
            extra={"price": i},
        )
        for i, item_id in enumerate(ids)
    ]
    write_catalog(
        folder,
        model_id=tiny_featurizer.model_id,
        dim=tiny_featurizer.dim,
        input_size=tiny_featurizer.input_size,
        ids=ids,
        vectors=vectors,
        records=records,
        index_kind="exact",
        index_params={},
        summary={"indexed": len(ids)},
        report_lines=[],
    )
    return TinyCatalog(folder, tiny_featurizer.model_id, ids, vectors, images)


@pytest.fixture
def cloud_settings(tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path) -> CloudSettings:
    return CloudSettings.build(
        index_dir=str(tiny_catalog.folder),
        redis_url=redis_server.url,
        match_list_cap=5,
        top_k=3,
        photo_model=str(tiny_model),
        redis_timeout_s=1.0,
    )


@pytest.fixture
def service(cloud_settings: CloudSettings) -> Iterator[SearchService]:
    svc = SearchService(cloud_settings)
    yield svc
    svc.metadata.close()


def feature_event(
    vector: np.ndarray, model_id: str, device_id: str = "cam-01", seq: int = 1, topic_device: str | None = None
) -> dict[str, Any]:
    payload = encode(
        FeatureMessage(
            device_id=device_id,
            seq=seq,
            ts=time.time() - 60 + seq * 1e-3,  # within the cloud's capture-time window
            model_id=model_id,
            vector=vector,
            frame_w=1280,
            frame_h=720,
            timing_ms={"prepare": 1.0, "featurize": 4.0},
        )
    )
    event: dict[str, Any] = json.loads(payload)
    event["topic_device"] = topic_device or device_id
    return event
