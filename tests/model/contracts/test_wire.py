"""The feature message codec (``model.contracts.wire``): round trip, and every refusal with its reason."""

from __future__ import annotations

import base64
import json
from typing import Literal

import numpy as np
import pytest

from model.contracts.errors import Rejected
from model.contracts.limits import MAX_PAYLOAD_BYTES
from model.contracts.wire import FeatureMessage, decode, encode


def unit(dim: int = 64, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


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
        (json.dumps(_body(v=3)).encode(), "unknown_version"),
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
