"""Query thumbnails: opt-in, a JPEG of the prepared frame within 8 KB, at most once a second, on the device's own
topic, never in the way of feature messages; the message contract refuses anything that is not that."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_component.config import ThumbnailConfig
from edge_component.thumbnail import ThumbnailSender, jpeg_within
from model.contracts.errors import Rejected
from model.contracts.thumbnail import MAX_JPEG_BYTES, Thumbnail, decode_thumbnail, encode_thumbnail
from simulator.stack.processes import MosquittoProcess
from tests.edge_component.helpers import Running, config
from tests.wait import wait_for


def noisy(seed: int, side: int = 224) -> np.ndarray:
    """Sensor-noise frames are the hardest to compress: the worst case for the 8 KB budget."""
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)


def test_even_a_noise_frame_fits_the_budget_and_stays_a_picture() -> None:
    jpeg = jpeg_within(noisy(1), MAX_JPEG_BYTES)
    assert jpeg is not None and len(jpeg) <= MAX_JPEG_BYTES
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and min(decoded.shape[:2]) >= 112  # scaled down at most to half
    assert jpeg_within(noisy(1), 300) is None  # a budget nothing meets: None, not an oversize JPEG


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []

    def publish_latest(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.sent.append((topic, payload, qos))


def test_off_by_default_and_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    assert not ThumbnailSender(ThumbnailConfig(), "cam-1", recorder).offer(noisy(0), 1, 1.0)  # type: ignore[arg-type]
    assert recorder.sent == []

    clock = [1000.0]
    monkeypatch.setattr("edge_component.thumbnail.time.monotonic", lambda: clock[0])
    sender = ThumbnailSender(ThumbnailConfig(enabled=True), "cam-1", recorder)  # type: ignore[arg-type]
    offered = []
    for step in range(25):  # 10 frames a second for 2.5 s
        clock[0] = 1000.0 + step / 10
        offered.append(sender.offer(noisy(step, 64), 100 + step, 1_763_700_000.0 + step / 10))
    assert [i for i, sent in enumerate(offered) if sent] == [0, 10, 20]
    topics = {topic for topic, _, _ in recorder.sent}
    assert topics == {"visualsearch/cam-1/thumbnail"} and {qos for _, _, qos in recorder.sent} == {0}
    first = decode_thumbnail(recorder.sent[0][1])
    assert (first.device_id, first.seq) == ("cam-1", 100)


def test_the_loop_sends_thumbnails_of_its_feature_frames_through_a_real_broker(
    tmp_path: Path, mosquitto: MosquittoProcess, tiny_model: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in range(25):
        cv2.imwrite(str(frames / f"{n:03d}.png"), noisy(n, 160))
    received: dict[str, list[dict]] = {"features": [], "thumbnail": []}
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="thumb-watch")
    client.on_message = lambda _c, _u, m: received[m.topic.rsplit("/", 1)[1]].append(json.loads(m.payload))
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe([("visualsearch/cam-th/features", 1), ("visualsearch/cam-th/thumbnail", 0)])
    client.loop_start()
    assert subscribed.wait(10), "no SUBACK"
    cfg = config(
        "cam-th",
        source={"kind": "folder", "path": str(frames), "fps": 10, "realtime": True},
        model={"path": str(tiny_model), "backend": "onnxruntime"},
        publish={"kind": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}},
        thumbnail={"enabled": True},
    )
    started = time.monotonic()
    run = Running(cfg, tiny_model)
    try:
        run.join(30)
    finally:
        elapsed = time.monotonic() - started
        run.stop()
    # Every thumbnail the loop counts as sent arrives (loopback, no broker restart): wait for that, not a while.
    wait_for(lambda: len(received["thumbnail"]) >= run.loop.stats()["thumbnails"], 10, "the sent thumbnails")
    client.loop_stop()
    client.disconnect()
    thumbnails = [decode_thumbnail(body) for body in received["thumbnail"]]
    assert len(received["features"]) >= 10  # a live source: a frame may be superseded under load
    assert 2 <= len(thumbnails) <= math.ceil(elapsed) + 1  # ≈ 2.5 s of video: at most one a second
    feature_seqs = {body["seq"] for body in received["features"]}
    for thumbnail in thumbnails:
        assert thumbnail.seq in feature_seqs and len(thumbnail.jpeg) <= MAX_JPEG_BYTES
        picture = cv2.imdecode(np.frombuffer(thumbnail.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[0] == picture.shape[1]  # the prepared (square) model input, not the raw frame
    assert run.loop.stats()["thumbnails"] == len(thumbnails)


def _message(**change: object) -> dict:
    jpeg = jpeg_within(noisy(3, 64), MAX_JPEG_BYTES)
    assert jpeg is not None
    return {**json.loads(encode_thumbnail(Thumbnail("cam-1", 5, 1_763_700_000.5, jpeg))), **change}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unknown_version"),
        ({"device_id": "cam/1"}, "bad_device_id"),
        ({"seq": True}, "bad_type"),
        ({"ts": float("inf")}, "bad_ts"),
        ({"jpeg": "not base64!"}, "bad_base64"),
        ({"jpeg": "R0lGODlh"}, "bad_jpeg"),
    ],
)
def test_anything_but_a_small_complete_jpeg_is_refused(change: dict, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        decode_thumbnail(_message(**change))
    assert info.value.reason == reason
    assert decode_thumbnail(_message()).seq == 5
