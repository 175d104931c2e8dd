"""docs/architecture.md states the contracts as the code writes them: every field and key, no more, no less."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from cloud_lambda.catalog.layout import Manifest, write_catalog
from cloud_lambda.device_notes import rejected_key, thumbnail_key
from cloud_lambda.matches import DEVICES_KEY, matches_key, seen_key, status_key
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.publish.base import MatchPublisher
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.status import build_status
from model.contracts.thumbnail import Thumbnail, encode_thumbnail, thumbnail_topic
from model.contracts.topics import features_topic, matches_topic, status_topic
from model.contracts.wire import FeatureMessage, encode
from model.featurizer import Featurizer
from model.sidecar import Sidecar
from simulator.stack.processes import RedisProcess
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "architecture.md").read_text()


def section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def first_column(text: str) -> set[str]:
    """Names in backticks in the first cell of each table row (``| `a`, `b` | ...``)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def json_example(text: str) -> dict[str, object]:
    block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert block is not None
    return dict(json.loads(re.sub(r'"<[^>]*>"', '""', block.group(1))))


def test_sidecar_fields() -> None:
    assert first_column(section("Featurizer model file and sidecar")) == set(Sidecar.model_fields)


def test_index_manifest_fields() -> None:
    assert first_column(section("Catalog index folder").split("`manifest.json` fields:")[1]) == set(
        Manifest.model_fields
    )


def test_topics() -> None:
    text = section("MQTT topics")
    for topic in (features_topic, status_topic, matches_topic, thumbnail_topic):
        assert f"`{topic('{device_id}')}`" in text


def test_wire_message_fields() -> None:
    message = FeatureMessage("cam-01", 1, time.time(), "m-1", np.eye(1, 8, dtype=np.float32)[0], 1280, 720, {"a": 1})
    written = set(json.loads(encode(message)))
    text = section("Wire message, version 1")
    assert set(json_example(text)) == written
    assert first_column(text) == written


def test_wire_message_version_2_fields() -> None:
    rows = np.eye(4, 8, dtype=np.float32)
    message = FeatureMessage("cam-01", 1, time.time(), "m-1", rows[0], 1280, 720, {"a": 1}, regions=rows)
    written = set(json.loads(encode(message)))
    text = section("Wire message, version 2")
    assert set(json_example(text)) == written
    assert first_column(text) == written


def test_status_fields() -> None:
    status = build_status(
        device_id="cam-01",
        state="online",
        fps=1.0,
        backend="onnxruntime",
        device="CPU",
        model_id="m-1",
        featurize_ms=None,
        captured=0,
        published=0,
        skipped=0,
        dropped=0,
        queue_depth=0,
        source={},
        last_error=None,
        extra={"precision": "int8", "threads": 2},  # what EdgeLoop.status adds
    )
    assert first_column(section("Status message")) == set(status)


def test_redis_keys() -> None:
    documented = first_column(section("Redis keys"))
    written = {
        matches_key("{device_id}"),
        seen_key("{device_id}", 0).replace(":0", ":{seq}"),
        status_key("{device_id}"),
        thumbnail_key("{device_id}"),
        rejected_key("{device_id}"),
    }
    assert documented == written | {DEVICES_KEY}


def test_thumbnail_fields() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 16 + b"\xff\xd9"
    written = set(json.loads(encode_thumbnail(Thumbnail("cam-01", 1, time.time(), jpeg))))
    text = section("Query thumbnail, version 1")
    assert set(json_example(text)) == written and first_column(text) == written


class _Quiet(MatchPublisher):
    name = "none"

    def publish(self, topic: str, payload: bytes) -> None:
        pass


def test_match_record_fields(tiny_model: Path, redis_server: RedisProcess, tmp_path: Path) -> None:
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1, warmup=0)
    vector = featurizer.featurize_frame(np.full((64, 64, 3), 90, np.uint8))
    record = ItemRecord(id="item-a", model_id=featurizer.model_id, title="A", image_url="/a.png", extra={})
    write_catalog(
        tmp_path / "index",
        model_id=featurizer.model_id,
        dim=featurizer.dim,
        input_size=featurizer.input_size,
        ids=["item-a"],
        vectors=vector[None],
        records=[record],
        index_kind="exact",
        index_params={},
        summary={},
        report_lines=[],
    )
    settings = CloudSettings.build(index_dir=str(tmp_path / "index"), redis_url=redis_server.url)
    service = SearchService(settings, publisher=_Quiet())
    message = FeatureMessage("cam-01", 7, time.time(), featurizer.model_id, vector, 640, 480, {"featurize": 1.0})
    assert service.handle_feature_event({**json.loads(encode(message)), "topic_device": "cam-01"})["status"] == (
        "accepted"
    )
    stored = service.matches.latest("cam-01", 1)[0]
    example = json_example(section("Match record"))
    assert set(example) == set(stored)
    assert set(example["matches"][0]) == set(stored["matches"][0])  # type: ignore[index]


@pytest.mark.parametrize("route", ["/api/health", "/api/devices", "/api/search"])
def test_api_routes_are_listed(route: str) -> None:
    assert f"`GET {route}" in section("HTTP API") or f"`POST {route}" in section("HTTP API")
