"""Wire version 2: several region vectors of one frame in one message, within an 8 KB budget; version 1 still
decodes. Every malformed version-2 message is refused with a reason, never half-read."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.contracts.errors import Rejected
from model.contracts.wire import (
    MAX_V2_BYTES,
    REGIONS_WIRE_VERSION,
    WIRE_VERSION,
    FeatureMessage,
    decode,
    encode,
)

MODEL = "efficientnet-lite0-int8-0123abcd"


def regions(count: int, dim: int = 1280, seed: int = 0) -> np.ndarray:
    """Unit vectors like pooled ReLU6 features (non-negative, dense)."""
    rows = np.abs(np.random.default_rng(seed).standard_normal((count, dim))).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def message(rows: np.ndarray, dtype: Any = "int8") -> FeatureMessage:
    return FeatureMessage(
        "camera-entrance-01",
        1_796_020_415_918,
        1_796_020_415.118,
        MODEL,
        rows[0],
        1280,
        720,
        {"prepare": 1.1, "featurize": 19.8, "encode": 0.1},
        regions=rows,
        region_dtype=dtype,
    )


def v2_body(count: int = 3, dim: int = 64) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode(message(regions(count, dim))))
    return body


@pytest.mark.parametrize(("dtype", "count", "min_cosine"), [("int8", 4, 0.9999), ("float16", 2, 0.99999)])
def test_region_vectors_round_trip_within_the_byte_budget(dtype: Any, count: int, min_cosine: float) -> None:
    rows = regions(count)
    payload = encode(message(rows, dtype))
    assert len(payload) <= MAX_V2_BYTES
    out = decode(payload)
    assert out.version == REGIONS_WIRE_VERSION and out.region_dtype == dtype
    assert out.vectors.shape == (count, 1280)
    assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(out.vectors * rows, axis=1))) >= min_cosine
    assert np.array_equal(out.vector, out.vectors[0])
    assert out.device_id == "camera-entrance-01" and out.frame_w == 1280 and out.timing_ms["featurize"] == 19.8


def test_version_1_still_decodes_as_one_region() -> None:
    vector = regions(1)[0]
    out = decode(encode(FeatureMessage("cam-1", 1, 1.7e9, MODEL, vector)))
    assert out.version == WIRE_VERSION and out.regions is None
    assert out.vectors.shape == (1, 1280) and float(out.vectors[0] @ vector) > 0.9999


def test_more_regions_than_the_budget_holds_are_refused_by_the_encoder() -> None:
    with pytest.raises(Rejected) as info:
        encode(message(regions(5)))  # 5 × 1280 int8 ≈ 8.5 KB of base64
    assert info.value.reason == "oversize"


def test_the_decoder_refuses_a_version_2_message_over_the_budget() -> None:
    body = v2_body()
    body["timing_ms"] = {f"stage{i}": 1.0 for i in range(16)}
    body["device_id"] = "c" * 128
    body["vectors"] = base64.b64encode(np.zeros(3 * 64, np.int8).tobytes()).decode() + " " * MAX_V2_BYTES
    with pytest.raises(Rejected) as info:
        decode(json.dumps(body).encode())
    assert info.value.reason == "oversize"
    with pytest.raises(Rejected) as from_event:
        decode(body)  # an IoT rule event: measured as the JSON the device sent
    assert from_event.value.reason == "oversize"


def _with(**changes: Any) -> dict[str, Any]:
    body = v2_body()
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def _int8(values: np.ndarray) -> str:
    return base64.b64encode(values.astype(np.int8).tobytes()).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_with(regions=None), "missing_field"),
        (_with(vectors=None), "missing_field"),
        (_with(regions=0), "bad_regions"),
        (_with(regions=17), "bad_regions"),
        (_with(regions=True), "bad_type"),
        (_with(regions=2), "wrong_dim"),
        (_with(dim=63), "wrong_dim"),
        (_with(dtype="float32"), "bad_dtype"),
        (_with(scales=None), "bad_scales"),
        (_with(scales=[0.01, 0.01]), "bad_scales"),
        (_with(scales=[0.01, -0.01, 0.01]), "bad_scales"),
        (_with(scales=[0.01, True, 0.01]), "bad_scales"),
        (_with(scales=[0.01, 10**400, 0.01]), "bad_scales"),
        (_with(scales="0.01,0.01,0.01"), "bad_scales"),
        (_with(scales=[1.0, 1.0, 1.0]), "not_normalized"),
        (_with(vectors="not base64!"), "bad_base64"),
        (_with(vectors=_int8(np.zeros(3 * 64))), "not_normalized"),
        (_with(v=3), "unknown_version"),
    ],
)
def test_malformed_version_2_messages_are_refused_with_a_reason(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected) as info:
        decode(json.dumps(body).encode())
    assert info.value.reason == reason, str(info.value)


def test_float16_regions_carry_no_scales() -> None:
    body: dict[str, Any] = json.loads(encode(message(regions(2, 64), "float16")))
    assert "scales" not in body
    body["scales"] = [0.01, 0.01]
    with pytest.raises(Rejected) as info:
        decode(json.dumps(body).encode())
    assert info.value.reason == "bad_scales"


REASONS = {
    "missing_field",
    "bad_type",
    "bad_regions",
    "bad_scales",
    "bad_dtype",
    "bad_base64",
    "wrong_dim",
    "not_finite",
    "not_normalized",
    "oversize",
    "not_json",
    "too_deep",
    "bad_text",
}
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.lists(st.one_of(st.floats(allow_nan=True), st.integers(), st.booleans(), st.text(max_size=4)), max_size=20),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["regions", "vectors", "scales", "dtype", "dim"]), value=hostile)
def test_any_hostile_value_in_a_version_2_field_is_decoded_or_refused_with_a_reason(field: str, value: Any) -> None:
    body = v2_body()
    body[field] = value
    try:
        out = decode(json.dumps(body, allow_nan=True).encode())
    except Rejected as exc:
        assert exc.reason in REASONS, exc.reason
    else:  # the value happened to be valid: then the vectors must be whole and unit
        assert out.vectors.shape[0] == out.regions.shape[0] if out.regions is not None else True
        assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
