"""The web app in headless Chromium (Debian's, never a downloaded one) against the real local stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from model.contracts.topics import features_topic, status_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up
from simulator.stack.state import StackState
from tests.conftest import ARTIFACTS
from tests.simulator.conftest import HOSTILE_TITLE, TinyCatalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make setup)")


@pytest.fixture
def stack(tiny_catalog: TinyCatalog, tmp_path: Path) -> Iterator[StackState]:
    config = StackConfig(
        state_dir=tmp_path / "stack",
        mqtt_port=0,
        redis_port=0,
        http_port=0,
        index_dir=tiny_catalog.index_dir,
        catalog_dir=tiny_catalog.images_dir,
        photo_model=tiny_catalog.model,
    )
    state, _ = stack_up(config)
    try:
        yield state
    finally:
        stack_down(config.state_dir)


def test_page_shows_matches_hostile_titles_literally_and_searches_by_photo(
    stack: StackState, tiny_catalog: TinyCatalog, tmp_path: Path
) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    broker = stack.service("mosquitto")
    assert broker is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="browser-test-device")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()

    def publish_item(device: str, seq: int, item: str) -> None:
        message = FeatureMessage(device, seq, time.time() - 0.02, tiny_catalog.model_id, tiny_catalog.vectors[item])
        client.publish(features_topic(device), encode(message), qos=1).wait_for_publish(5)

    status = {
        "v": 1,
        "device_id": "web-cam",
        "ts": time.time(),
        "state": "online",
        "fps": 12.5,
        "backend": "openvino",
        "device": "CPU",
    }
    client.publish(status_topic("web-cam"), json.dumps(status), qos=1).wait_for_publish(5)
    idle = {**status, "device_id": "idle-cam", "state": "degraded"}
    client.publish(status_topic("idle-cam"), json.dumps(idle), qos=1).wait_for_publish(5)

    dialogs: list[str] = []
    photo = tmp_path / "query.png"
    cv2.imwrite(str(photo), tiny_catalog.images["item-c"])
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            api_calls: list[str] = []
            page.on("request", lambda request: api_calls.append(request.url.split("/api/", 1)[-1]))
            page.goto(stack.urls["web"])
            # Image URLs that look like paths but load from another host (protocol-relative, backslashes) are refused.
            hostile = ["//evil.example/x.png", "/\\evil.example/x.png", "\\\\evil.example/x.png", "javascript:alert(1)"]
            assert page.evaluate("(urls) => urls.map(safeImageUrl)", hostile) == [None] * len(hostile)
            assert page.evaluate("() => safeImageUrl('/catalog/a.png')") == "/catalog/a.png"
            card = page.locator('article[data-device="web-cam"]')
            idle_card = page.locator('article[data-device="idle-cam"]')
            # A device with a status but no matches: "no matches yet", not an error.
            expect(idle_card.locator(".no-matches")).to_be_visible(timeout=10_000)
            expect(card.locator(".state")).to_have_text("online")
            expect(card).to_contain_text("12.5 fps")
            expect(card).to_contain_text("openvino on CPU")

            publish_item("web-cam", 1, "item-b")
            top = card.locator(".match.top .title")
            expect(top).to_have_text(HOSTILE_TITLE, timeout=10_000)  # literally, markup and quotes included
            assert card.locator("script").count() == 0 and card.locator("b").count() == 0

            publish_item("web-cam", 2, "item-a")
            expect(top).to_have_text("Red mug", timeout=10_000)
            image = card.locator(".match.top img")
            expect(image).to_have_attribute("src", "/catalog/item-a.png")
            page.wait_for_function(
                "() => { const i = document.querySelector('article[data-device=\"web-cam\"] .match.top img');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=10_000,
            )
            expect(card.locator(".match-line")).to_contain_text("frame-to-match")
            expect(page.locator('[data-testid="api-state"]')).to_have_text("live")

            page.set_input_files('[data-testid="photo-file"]', str(photo))
            page.click("#photo-submit")
            results = page.locator('[data-testid="photo-results"] .match .title')
            expect(results.first).to_have_text("Chelsea's cat bed", timeout=15_000)
            expect(page.locator('[data-testid="photo-message"]')).to_contain_text("matches")
            page.screenshot(path=str(ARTIFACTS / "webapp.png"), full_page=True)
            # Polling is one paged call for every camera, never one call per camera.
            assert any(call.startswith("latest?") for call in api_calls), api_calls
            assert not [call for call in api_calls if call.startswith("devices")], api_calls
        finally:
            browser.close()
            client.loop_stop()
            client.disconnect()
    assert dialogs == []  # no script from a title ever ran
