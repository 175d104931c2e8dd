"""The web app as the demo shows it, in headless Chromium against the real stack with the real model: a demo
camera's card shows what it saw (the query thumbnail), its recent frames with age and score, and every top-k
score of its newest frame; a camera of another model says why it is refused and what to do. The screenshot
is README's picture (``VS_UPDATE_DOCS_SCREENSHOT=1`` writes it to docs/webapp.jpg)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from model.contracts.topics import features_topic, status_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.demo import DEMO_MIN_SCORE
from simulator.live import build_live_config, run_live
from simulator.sample_data import SMALL, SampleData, ensure_sample_data
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up
from simulator.stack.state import StackState
from tests.conftest import ARTIFACTS, REPO_ROOT
from tests.simulator.test_webapp_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make setup)"),
]
SHOWN_FRAME = """() => new Promise((resolve) => {
  // The frame number and its scores in one synchronous read, once the card shows a frame that matched.
  const read = () => {
    const card = document.querySelector('article[data-device="demo-cam"]');
    const found = /frame #(\\d+)/.exec(card.querySelector('.match-line').textContent);
    const scores = [...card.querySelectorAll('[data-testid="topk"] .score-value')].map(e => e.textContent);
    if (found && scores.length) resolve({seq: Number(found[1]), scores}); else setTimeout(read, 100);
  };
  read();
})"""
SCREENSHOT = REPO_ROOT / "docs" / "webapp.jpg"
SCREENSHOT_MAX_BYTES = 300 * 1024


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]
) -> Iterator[tuple[StackState, SampleData, Path]]:
    root = tmp_path_factory.mktemp("demo-card")
    sample = ensure_sample_data(root / "sample", size=SMALL)
    model = exported_models["int8"]
    run_index(
        IndexOptions(
            source=str(sample.images_dir),
            out=root / "index",
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
        index_dir=root / "index",
        catalog_dir=sample.catalog_dir,
        photo_model=model,
        min_score=DEMO_MIN_SCORE,
    )
    state, _ = stack_up(config)
    try:
        yield state, sample, model
    finally:
        stack_down(config.state_dir)


class DemoCamera:
    """The demo's own camera settings (thumbnails on), looping the 4-item sample video until stopped."""

    def __init__(self, state: StackState, sample: SampleData, model: Path) -> None:
        self.stop = threading.Event()
        self.runs: list[Any] = []
        self.thread = threading.Thread(target=self._run, args=(state, sample, model), daemon=True)

    def _run(self, state: StackState, sample: SampleData, model: Path) -> None:
        self.runs.append(run_live(demo_camera_config(state, sample, model), self.stop, show_stats=False))

    def __enter__(self) -> DemoCamera:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.runs and self.runs[0].summary()["published"] >= 10


def demo_camera_config(state: StackState, sample: SampleData, model: Path) -> Any:
    broker = state.service("mosquitto")
    assert broker is not None
    config = build_live_config(
        {
            "device_id": "demo-cam",
            "source": {"kind": "video", "path": str(sample.video), "realtime": True, "loop": True},
            "model": {"path": str(model)},
            "live": {"max_rate_hz": 5},
            "publish": {"kind": "mqtt", "mqtt": {"host": "127.0.0.1", "port": broker.port}},
            "health": {"status_interval_s": 1},
            "thumbnail": {"enabled": True},
        }
    )
    return config


def a_camera_of_another_model(state: StackState) -> None:
    """Status accepted ("online"), every feature message refused as no_index_for_model: the case nobody could see."""
    broker = state.service("mosquitto")
    assert broker is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cam-fp32")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        status = {
            "v": 1,
            "device_id": "cam-fp32",
            "ts": time.time(),
            "state": "online",
            "fps": 2.0,
            "backend": "onnxruntime",
            "device": "CPU",
        }
        client.publish(status_topic("cam-fp32"), json.dumps(status), qos=1).wait_for_publish(5)
        vector = np.full(1280, 1 / np.sqrt(1280), np.float32)
        message = FeatureMessage("cam-fp32", 1, time.time(), "efficientnet-lite0-fp32-0badc0de", vector)
        client.publish(features_topic("cam-fp32"), encode(message), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_demo_camera_card_shows_thumbnail_history_and_scores(
    demo: tuple[StackState, SampleData, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import Response, expect, sync_playwright

    state, sample, model = demo
    a_camera_of_another_model(state)
    failures: list[str] = []
    with DemoCamera(state, sample, model), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 900})

            def on_response(response: Response) -> None:
                if response.status >= 400:
                    failures.append(f"{response.status} {response.url}")

            page.on("response", on_response)
            page.goto(state.urls["web"])
            card = page.locator('article[data-device="demo-cam"]')
            # What the camera saw: the thumbnail of its newest query, loaded as a picture.
            expect(card.locator('[data-testid="seen"]')).to_be_visible(timeout=15_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('article[data-device=\"demo-cam\"] .thumbnail');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=10_000,
            )
            # Recent frames, each with what it matched (or not) and how long ago.
            history = card.locator('[data-testid="history"] li')
            expect(history).to_have_count(10, timeout=15_000)  # 5 frames a second: ten within seconds
            texts = history.all_inner_texts()
            assert all("ago" in text or "just now" in text for text in texts), texts
            hit_scores = card.locator('[data-testid="history"] li.hit .history-score').all_inner_texts()
            assert hit_scores and all(re.fullmatch(r"\d\.\d\d", s) for s in hit_scores), hit_scores
            # Every top-k score of the newest frame, as its record holds them (read with the frame number in
            # one go: the card moves on with every poll).
            shown = page.evaluate(SHOWN_FRAME)
            records = json.loads(page.evaluate("fetch('/api/devices/demo-cam/matches?n=50').then(r => r.text())"))
            record = next(r for r in records["records"] if r["seq"] == shown["seq"])
            assert shown["scores"] == [f"{m['score']:.2f}" for m in record["matches"]] and shown["scores"]
            expect(card.locator(".state")).to_have_text("online")
            # The refused camera says why, and what to do.
            refused = page.locator('article[data-device="cam-fp32"]')
            expect(refused.locator(".state")).to_have_text("refused")
            expect(refused.locator('[data-testid="refusal"]')).to_contain_text("no index for model")
            expect(refused.locator('[data-testid="refusal"]')).to_contain_text("re-index the catalog")
            # A photo search: counted in words ("1 match", "2 matches").
            photo = tmp_path / "query.jpg"
            shutil.copy(sample.images_dir / "skimage-coffee.jpg", photo)
            page.set_input_files('[data-testid="photo-file"]', str(photo))
            page.click("#photo-submit")
            expect(page.locator('[data-testid="photo-results"] .match .title').first).to_have_text(
                'Cappuccino cup "Morning"', timeout=15_000
            )
            message = page.locator('[data-testid="photo-message"]').inner_text()
            assert message.startswith(("1 match in", "2 matches", "3 matches", "4 matches", "5 matches")), message
            wait_for_a_thumbnail_that_matched(page)  # README's picture: what the camera saw, and what it matched
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "webapp-demo.jpg"
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=80)
        finally:
            browser.close()
    assert failures == []  # no 404 at all: the favicon is not asked for, every thumbnail and picture loads
    assert shot.stat().st_size < SCREENSHOT_MAX_BYTES
    if os.environ.get("VS_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copy(shot, SCREENSHOT)


def wait_for_a_thumbnail_that_matched(page: Any, tries: int = 40) -> None:
    """Thumbnails go out once a second, so the one shown may be of an empty scene; for the picture, wait (a
    few seconds at most) until it is of a frame that matched. Not an assertion: the checks above are done."""
    for _ in range(tries):
        src = page.evaluate("document.querySelector('article[data-device=\"demo-cam\"] .thumbnail').src")
        seq = int(src.rsplit("seq=", 1)[1])
        records = json.loads(page.evaluate("fetch('/api/devices/demo-cam/matches?n=50').then(r => r.text())"))
        if any(r["seq"] == seq and r["matches"] for r in records["records"]):
            return
        page.wait_for_timeout(500)


def test_readme_shows_the_screenshot() -> None:
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size < SCREENSHOT_MAX_BYTES
    assert "(docs/webapp.jpg)" in (REPO_ROOT / "README.md").read_text()
