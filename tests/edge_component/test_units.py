"""Config, gate, outbound queue and wire codec: the pieces with exact rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from edge_component.config import ConfigError, LiveSettings, build_config, live_from_mapping, load_yaml, parse_overrides
from edge_component.gate import Gate
from edge_component.publishers.base import Outbound, OutboundQueue
from model.contracts.errors import Rejected
from model.contracts.limits import MAX_PAYLOAD_BYTES
from model.contracts.status import parse_status
from model.contracts.wire import FeatureMessage, decode, encode


def unit(dim: int = 64, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# --- configuration --------------------------------------------------------------------------------
def test_config_layers_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device_id: cam-7\nsource: {kind: video, path: /x.avi}\nlive: {max_rate_hz: 3}\n")
    cfg = build_config(
        {"live": {"max_rate_hz": 1, "heartbeat_s": 4}}, load_yaml(path), parse_overrides(["live.max_rate_hz=5"])
    )
    assert cfg.device_id == "cam-7" and cfg.source.kind == "video"
    assert cfg.live.max_rate_hz == 5 and cfg.live.heartbeat_s == 4


@pytest.mark.parametrize(
    ("layer", "key"),
    [
        ({"live": {"max_rate_hz": -1}}, "live.max_rate_hz"),
        ({"source": {"kind": "stream"}}, "source"),
        ({"publish": {"queue_capacity": 0}}, "publish.queue_capacity"),
        ({"publish": {"mqtt": {"cert_file": "/nonexistent.crt", "key_file": "/nonexistent.key"}}}, "publish.mqtt"),
        ({"live": {"roi": {"x": 0.5, "w": 0.8}}}, "live.roi"),
        ({"device_id": "bad/name"}, "device_id"),
        ({"sorce": {}}, "sorce"),
    ],
)
def test_bad_config_names_the_key(layer: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(layer)
    assert f"config key '{key}" in str(info.value)


def test_bad_yaml_and_override_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("live: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        parse_overrides(["novalue"])


def test_live_update_validates_and_keeps_other_fields() -> None:
    current = LiveSettings(max_rate_hz=2, heartbeat_s=7)
    new = live_from_mapping({"live": {"max_rate_hz": 9}, "source": {"kind": "camera"}}, current)
    assert new.max_rate_hz == 9 and new.heartbeat_s == 7
    with pytest.raises(ConfigError, match=r"live\.change_threshold"):
        live_from_mapping({"live": {"change_threshold": 3}}, current)


# --- gate -----------------------------------------------------------------------------------------
def test_gate_rate_change_and_heartbeat() -> None:
    gate = Gate(LiveSettings(max_rate_hz=2, change_threshold=0.95, heartbeat_s=10))
    a, b = unit(seed=1), unit(seed=2)
    assert gate.check(a, 100.0).decision == "send"
    assert gate.check(b, 100.2).decision == "rate"  # 0.2 s < 1/2 Hz
    assert gate.check(a, 101.0).decision == "unchanged"  # same vector as the last published
    assert gate.check(b, 101.5).decision == "send"  # changed
    assert gate.check(b, 111.6).decision == "send"  # unchanged, but the heartbeat is due
    gate.update(LiveSettings(max_rate_hz=0, change_threshold=None))
    assert gate.check(b, 111.61).decision == "send"


# --- outbound queue -------------------------------------------------------------------------------
def test_queue_drops_oldest_and_counts_exactly() -> None:
    queue = OutboundQueue(3)
    for seq in range(7):
        queue.put(Outbound("t", b"x", seq))
    assert queue.dropped == 4 and len(queue) == 3
    first = queue.pop()
    assert first is not None and first.seq == 4
    queue.requeue_front([first])
    assert [queue.pop().seq for _ in range(3)] == [4, 5, 6]  # type: ignore[union-attr]


# --- wire codec -----------------------------------------------------------------------------------
def _body(**changes: object) -> dict:
    message = FeatureMessage("cam-1", 5, 1763700000.0, "tiny-test-fp32-0123abcd", unit())
    body = json.loads(encode(message))
    body.update(changes)
    return body


def test_roundtrip_both_dtypes() -> None:
    vector = unit(1280, seed=3)
    cases: list[tuple[Literal["float16", "float32"], int]] = [("float16", 3414), ("float32", 6828)]
    for dtype, size in cases:
        payload = encode(
            FeatureMessage("cam-1", 1, 1763700000.123, "m-1", vector, 1280, 720, {"featurize": 4.9}, dtype)
        )
        assert abs(len(payload) - size) < 300
        out = decode(payload)
        assert out.dtype == dtype and out.frame_w == 1280 and float(out.vector @ vector) > 0.9999


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"", "empty"),
        (b"[1,2]", "not_object"),
        (json.dumps(_body(v=2)).encode(), "unknown_version"),
        (json.dumps({k: v for k, v in _body().items() if k != "seq"}).encode(), "missing_field"),
        (json.dumps(_body(dim=63)).encode(), "wrong_dim"),
        (
            json.dumps(_body(vector=base64.b64encode(np.full(64, np.nan, "<f2").tobytes()).decode())).encode(),
            "not_finite",
        ),
        (b'{"v":1,"x":NaN}', "not_finite"),
        (
            json.dumps(_body(vector=base64.b64encode((unit() * 3).astype("<f2").tobytes()).decode())).encode(),
            "not_normalized",
        ),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
        (json.dumps(_body(seq=True)).encode(), "bad_type"),
    ],
)
def test_decode_rejects_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        decode(payload)
    assert info.value.reason == reason
    assert str(info.value)


def test_encode_refuses_nan() -> None:
    bad = unit()
    bad[0] = np.nan
    with pytest.raises(Rejected, match="NaN"):
        encode(FeatureMessage("cam-1", 1, 1.0, "m", bad))


def test_parse_status() -> None:
    assert parse_status(b'{"v":1,"device_id":"cam-1","state":"offline"}')["state"] == "offline"
    for bad in (
        b"{",
        b'{"v":2,"device_id":"a","state":"online"}',
        b'{"v":1,"device_id":"a","state":"sleepy"}',
        b"x" * 20000,
    ):
        with pytest.raises(Rejected):
            parse_status(bad)
