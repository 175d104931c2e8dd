"""The edge folder source, capture times, durations, an unloadable model, retained status.

(The web app's protocol-relative image URLs: ``tests/simulator/test_webapp_browser.py``; the default image URL:
``test_catalog_metadata.py``; ``id: 1.5``: ``test_catalog_metadata.py``; ``stack up --host``: ``test_stack_auth.py``.)
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from cloud_lambda.search.service import SearchService
from edge_component.config import ConfigError, build_config, parse_overrides
from edge_component.sources import folder as folder_module
from edge_component.sources.folder import FolderReader
from model.contracts.wire import FeatureMessage, encode
from model.image_rules import ImageRejected, frame_dimensions
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess
from tests.hardening.conftest import Catalog, count_case, redis_snapshot
from tests.wait import wait_for


# --- item 9: the edge folder source checks headers before decoding --------------------------------------
def png_declaring(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * 3 + 1) * 4, 9)  # four rows; a decoder would allocate all of them
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_the_folder_source_refuses_a_bomb_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count_case("edge: 20000x20000 PNG in the folder")
    (tmp_path / "0-bomb.png").write_bytes(png_declaring(20_000, 20_000))
    cv2.imwrite(str(tmp_path / "1-fine.png"), np.full((120, 160, 3), 77, np.uint8))
    decoded: list[int] = []
    real = cv2.imdecode

    def watched(buf: np.ndarray, flags: int) -> Any:
        decoded.append(len(buf))
        return real(buf, flags)

    monkeypatch.setattr(folder_module.cv2, "imdecode", watched)
    monkeypatch.setattr(folder_module.cv2, "imread", lambda *_a, **_k: pytest.fail("imread decodes unchecked"))
    reader = FolderReader(str(tmp_path))
    reader.open()
    frame = reader.read()
    assert frame.shape == (120, 160, 3) and reader.unreadable == 1
    assert len(decoded) == 1  # only the fine file reached the decoder


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda: cv2.imencode(".png", np.zeros((30, 50, 3), np.uint8))[1].tobytes(), (50, 30)),
        (lambda: cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))[1].tobytes(), (50, 30)),
        (lambda: cv2.imencode(".bmp", np.zeros((30, 50, 3), np.uint8))[1].tobytes(), (50, 30)),
        (lambda: cv2.imencode(".tiff", np.zeros((30, 50, 3), np.uint8))[1].tobytes(), (50, 30)),
        (lambda: cv2.imencode(".webp", np.zeros((30, 50, 3), np.uint8))[1].tobytes(), (50, 30)),
        (
            lambda: cv2.imencode(".webp", np.zeros((30, 50, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[
                1
            ].tobytes(),
            (50, 30),
        ),
    ],
)
def test_frame_dimensions_come_from_every_folder_format_header(make: Any, size: tuple[int, int]) -> None:
    info = frame_dimensions(make())
    assert (info.width, info.height) == size


def test_unknown_content_is_not_decoded() -> None:
    with pytest.raises(ImageRejected):
        frame_dimensions(b"GIF89a not for us")
    with pytest.raises(ImageRejected):
        frame_dimensions(b"")


# --- item 10: capture time range ------------------------------------------------------------------------
@pytest.mark.parametrize("offset_s", [None, -3 * 86_400, 3600, 10 * 365 * 86_400])
def test_a_capture_time_far_from_now_is_refused(
    hardened_service: SearchService, redis_client: redis.Redis, hardening_catalog: Catalog, offset_s: float | None
) -> None:
    """ts = 0 showed a 56-year latency in the web app; a clock ahead of the cloud's, a negative one."""
    count_case("search: capture ts out of range")
    ts = 0.0 if offset_s is None else time.time() + offset_s
    payload = encode(FeatureMessage("cam-ts", 9, ts, hardening_catalog.model_id, hardening_catalog.vectors[1]))
    before = redis_snapshot(redis_client)
    result = hardened_service.handle_feature_event({**json.loads(payload), "topic_device": "cam-ts"})
    assert result["status"] == "rejected" and result["reason"] == "ts_out_of_range", result
    assert "clock" in result["message"]
    assert redis_snapshot(redis_client) == before


def test_a_recent_capture_time_is_accepted(hardened_service: SearchService, hardening_catalog: Catalog) -> None:
    seq = int(time.time() * 1000) % 10**9
    for ts in (time.time() - 3600, time.time() + 30):  # an hour-old spool replay; a clock 30 s ahead
        payload = encode(FeatureMessage("cam-ts-ok", seq, ts, hardening_catalog.model_id, hardening_catalog.vectors[1]))
        assert (
            hardened_service.handle_feature_event({**json.loads(payload), "topic_device": "cam-ts-ok"})["status"]
            == "accepted"
        )
        seq += 1


# --- item 10: durations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "item",
    [
        "source.stall_timeout_s=.inf",
        "source.reconnect_max_s=.inf",
        "live.heartbeat_s=.inf",
        "publish.timeout_s=.inf",
        "health.status_interval_s=.inf",
        "live.max_rate_hz=.inf",
        "source.stall_timeout_s=.nan",
    ],
)
def test_infinite_durations_are_refused(item: str) -> None:
    """``.inf`` passed ``gt=0`` and disabled the watchdog."""
    count_case("config: infinite duration")
    with pytest.raises(ConfigError) as refused:
        build_config(parse_overrides([item]))
    assert item.split("=")[0] in str(refused.value) and "finite" in str(refused.value)


# --- item 10: simulate with a model that does not load ---------------------------------------------------
def test_simulate_with_an_unloadable_model_prints_one_line(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    from model.hub import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a protobuf model" * 10)
    sidecar = json.loads(tiny_model.with_suffix(".json").read_text())
    sidecar["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()  # a sidecar that matches: the bytes are bad
    bad.with_suffix(".json").write_text(json.dumps(sidecar))
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((96, 96, 3), 90, np.uint8))
    code = main(["simulate", "--folder", str(images), "--model", str(bad), "--broker", "mqtt://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("simulate:")]
    assert len(lines) == 1 and str(bad) in lines[0] and "cannot be loaded" in lines[0], err


# --- item 10: a retained status does not refresh "last seen" --------------------------------------------
@pytest.mark.slow
def test_a_retained_status_is_not_taken_for_a_live_device(
    tmp_path: Path, hardened_service: SearchService, redis_client: redis.Redis
) -> None:
    count_case("bridge: retained status of a dead device")
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto").start()
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="retainer")
    bridge = RuleBridge(
        hardened_service.handle_feature_event,
        hardened_service.handle_status_event,
        port=broker.port,
        client_id="retain-bridge",
        persistent=False,
    )
    try:
        sender.connect(broker.host, broker.port)
        sender.loop_start()
        stale = {"v": 1, "device_id": "cam-dead", "state": "online"}
        sender.publish("visualsearch/cam-dead/status", json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
        bridge.start()
        live = {"v": 1, "device_id": "cam-alive", "state": "online"}
        sender.publish("visualsearch/cam-alive/status", json.dumps(live), qos=1).wait_for_publish(5)
        wait_for(lambda: bridge.counts["status:accepted"] >= 1, 10, "the live status")
        assert bridge.counts["status:accepted"] == 1 and bridge.counts["skipped:retained"] == 1
        assert redis_client.zscore("visualsearch:devices", "cam-dead") is None
        assert redis_client.zscore("visualsearch:devices", "cam-alive") is not None
    finally:
        bridge.stop()
        sender.loop_stop()
        broker.stop()
