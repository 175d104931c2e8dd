"""End to end on the real stack with the real model: sample video → simulator → mosquitto → rule bridge →
search → Redis → HTTP API. Scored against the video's ground truth."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from simulator.demo import DEMO_MIN_SCORE
from simulator.live import build_live_config, run_live
from simulator.sample_data import SampleData, ensure_sample_data
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up
from simulator.stack.state import StackState

pytestmark = pytest.mark.slow
DEVICE = "e2e-cam"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    return ensure_sample_data(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def real_stack(
    sample: SampleData, exported_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackState]:
    root = tmp_path_factory.mktemp("e2e")
    model = exported_models["int8"]
    index_dir = root / "index"
    run_index(
        IndexOptions(
            source=str(sample.images_dir),
            out=index_dir,
            model=model,
            metadata=sample.items_file,
            workers=1,
            progress=False,
        )
    )
    config = StackConfig(
        state_dir=root / "stack",
        mqtt_port=0,
        redis_port=0,
        http_port=0,
        index_dir=index_dir,
        catalog_dir=sample.catalog_dir,
        photo_model=model,
        min_score=DEMO_MIN_SCORE,
        match_list_cap=1000,
    )
    state, started = stack_up(config)
    assert started
    try:
        yield state
    finally:
        outcome = stack_down(config.state_dir)
        assert set(outcome.values()) <= {"stopped"}, outcome


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_sample_video_matches_through_the_whole_stack(
    real_stack: StackState, sample: SampleData, exported_models: dict[str, Path]
) -> None:
    mqtt = real_stack.service("mosquitto")
    assert mqtt is not None
    config = build_live_config(
        {
            "device_id": DEVICE,
            "source": {"kind": "video", "path": str(sample.video), "realtime": False},
            "model": {"path": str(exported_models["int8"])},
            "live": {"max_rate_hz": 0, "change_threshold": None},
            "publish": {"kind": "mqtt", "mqtt": {"host": "127.0.0.1", "port": mqtt.port}},
        }
    )
    run = run_live(config, show_stats=False)
    summary = run.summary()
    frames = sample.truth()["frames"]
    assert summary["captured"] == len(frames) and summary["published"] == len(frames)
    assert summary["dropped"] == 0 and summary["skipped"] == 0  # every frame sent: seq → frame index holds

    api = real_stack.urls["api"]
    deadline = time.monotonic() + 60
    records: list[dict] = []
    while time.monotonic() < deadline:
        records = get(f"{api}/devices/{DEVICE}/matches?n=1000")["records"]
        if len(records) >= len(frames):
            break
        time.sleep(0.2)
    assert len(records) == len(frames)
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), reverse=True)  # newest first

    catalog_total = catalog_correct = other_total = other_matched = 0
    for record in records:
        truth = frames[record["seq"] - summary["first_seq"]]
        top = record["matches"][0] if record["matches"] else None
        if truth["item"] is not None:
            catalog_total += 1
            catalog_correct += top is not None and top["id"] == truth["item"]
        else:
            other_total += 1
            other_matched += top is not None
        assert record["searched_at"] >= record["ts"]
        if top is not None:
            assert top["title"] and top["image_url"].startswith("/catalog/images/")
    print(
        f"catalog frames {catalog_total}: top-1 correct {catalog_correct / catalog_total:.3f}; "
        f"other frames {other_total}: matched {other_matched / other_total:.3f}"
    )
    assert catalog_total >= 200 and other_total >= 100
    assert catalog_correct / catalog_total >= 0.90
    assert other_matched / other_total <= 0.10

    latest = get(f"{api}/devices/{DEVICE}/matches/latest")["record"]
    assert latest["seq"] == summary["last_seq"]
    devices = {d["device_id"]: d for d in get(f"{api}/devices")["devices"]}
    # The simulator stopped cleanly, so its last word on the status topic is "offline".
    assert devices[DEVICE]["status"]["state"] == "offline"
    # The catalog image the web app would show is served by the stack.
    with urllib.request.urlopen(real_stack.urls["web"] + "catalog/images/skimage-chelsea.jpg", timeout=5) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
