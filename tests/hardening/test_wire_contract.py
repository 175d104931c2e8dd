"""The v1 feature message, field by field and at every exact boundary (a mutation pass once found 55 % of one-line
mutants of the codec surviving the fuzz tests, which check *that* a message is refused, not *why*)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from model.contracts.errors import Rejected
from model.contracts.limits import MAX_DIM, MAX_PAYLOAD_BYTES
from model.contracts.wire import NORM_TOLERANCE, FeatureMessage, decode, decode_vector, encode, encode_vector

TS = 1_796_000_000.123456


def unit(dim: int, seed: int = 0) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def body(**changes: Any) -> dict[str, Any]:
    message = FeatureMessage("cam-01", 7, TS, "m-1", unit(16), 640, 480, {"prepare": 1.25, "featurize": 2.5})
    data: dict[str, Any] = json.loads(encode(message))
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


def reason(payload: Any) -> str:
    with pytest.raises(Rejected) as refused:
        decode(payload)
    return refused.value.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_every_field_survives_the_round_trip(dtype: str) -> None:
    vector = unit(33, seed=3)
    message = FeatureMessage("a:b_c-1", 2**63 - 1, TS, "tiny-fp32.v1+x", vector, 1, 99_999, {"a": 0.0, "b": 1e6}, dtype)  # type: ignore[arg-type]
    for payload in (encode(message), encode(message).decode(), json.loads(encode(message))):
        got = decode(payload)
        assert (got.device_id, got.seq, got.model_id, got.dtype) == ("a:b_c-1", 2**63 - 1, "tiny-fp32.v1+x", dtype)
        assert got.ts == round(TS, 6) and (got.frame_w, got.frame_h) == (1, 99_999)
        assert got.timing_ms == {"a": 0.0, "b": 1e6} and got.dim == 33 and got.vector.dtype == np.float32
        tolerance = 1e-7 if dtype == "float32" else 1e-3
        assert np.allclose(got.vector, vector, atol=tolerance)
    data = json.loads(encode(message))
    assert data["v"] == 1 and data["dim"] == 33 and data["dtype"] == dtype and data["frame"] == {"w": 1, "h": 99_999}
    assert len(base64.b64decode(data["vector"])) == 33 * (2 if dtype == "float16" else 4)


def test_optional_fields_stay_absent() -> None:
    message = FeatureMessage("cam-01", 1, TS, "m-1", unit(4))
    data = json.loads(encode(message))
    assert "frame" not in data and "timing_ms" not in data
    got = decode(data)
    assert got.frame_w is None and got.frame_h is None and got.timing_ms == {}
    half = FeatureMessage("cam-01", 1, TS, "m-1", unit(4), frame_w=640)
    assert "frame" not in json.loads(encode(half))


def test_the_payload_limit_is_exact() -> None:
    text = json.dumps(body(), separators=(",", ":"))
    exact = (text[:-1] + " " * (MAX_PAYLOAD_BYTES - len(text)) + "}").encode()
    assert len(exact) == MAX_PAYLOAD_BYTES and decode(exact).seq == 7
    assert reason(exact[:-1] + b" }") == "oversize"
    assert reason(b"") == "empty" and reason("") == "empty"
    assert decode(bytearray(exact)).seq == 7 and decode(memoryview(exact)).seq == 7
    assert reason(12) == "not_json" and reason(b"[1]") == "not_object" and reason(b"{") == "not_json"


def test_encode_refuses_what_decode_would() -> None:
    big = FeatureMessage("cam-01", 1, TS, "m-1", unit(40_000), dtype="float32")
    for message, code in [
        (big, "oversize"),
        (FeatureMessage("cam.01", 1, TS, "m-1", unit(4)), "bad_device_id"),
        (FeatureMessage("cam-01", 1, TS, "m 1", unit(4)), "bad_model_id"),
        (FeatureMessage("cam-01", 1, TS, "m-1", np.array([np.nan, 1.0], np.float32)), "not_finite"),
        (FeatureMessage("cam-01", 1, TS, "m-1", unit(4), dtype="float64"), "bad_dtype"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(Rejected) as refused:
            encode(message)
        assert refused.value.reason == code


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("v", 3, "unknown_version"),
        ("v", True, "unknown_version"),
        ("v", "1", "unknown_version"),
        ("v", ..., "missing_field"),
        ("device_id", ..., "missing_field"),
        ("seq", ..., "missing_field"),
        ("ts", ..., "missing_field"),
        ("model_id", ..., "missing_field"),
        ("dim", ..., "missing_field"),
        ("dtype", ..., "missing_field"),
        ("vector", ..., "missing_field"),
        ("seq", True, "bad_type"),
        ("seq", 1.0, "bad_type"),
        ("seq", "7", "bad_type"),
        ("ts", "now", "bad_type"),
        ("ts", False, "bad_type"),
        ("dim", 16.0, "bad_type"),
        ("device_id", 7, "bad_type"),
        ("model_id", None, "bad_type"),
        ("dtype", 16, "bad_type"),
        ("vector", [0.5], "bad_type"),
        ("seq", -1, "bad_seq"),
        ("seq", 2**63, "bad_seq"),
        ("ts", -0.001, "bad_ts"),
        ("ts", 1e11, "bad_ts"),
        ("ts", 10**400, "bad_ts"),
        ("dim", 0, "wrong_dim"),
        ("dim", -16, "wrong_dim"),
        ("dim", MAX_DIM + 1, "wrong_dim"),
        ("dim", 15, "wrong_dim"),
        ("dim", 17, "wrong_dim"),
        ("dtype", "float64", "bad_dtype"),
        ("dtype", "float32", "wrong_dim"),  # 16 float16 values are 8 float32 ones
        ("vector", "!!!!", "bad_base64"),
        ("vector", "é", "bad_base64"),
        ("device_id", "x" * 129, "bad_device_id"),
        ("device_id", "cam-01\n", "bad_device_id"),
        ("model_id", "m" * 129, "bad_model_id"),
        ("model_id", "m-1\n", "bad_model_id"),
        ("model_id", "", "bad_model_id"),
        ("frame", {"w": 0, "h": 480}, "bad_frame"),
        ("frame", {"w": 640, "h": 100_000}, "bad_frame"),
        ("frame", {"w": True, "h": 480}, "bad_frame"),
        ("frame", {"w": 640}, "bad_frame"),
        ("frame", {"w": 640.0, "h": 480}, "bad_frame"),
        ("frame", [640, 480], "bad_frame"),
        ("timing_ms", {f"s{n}": 1.0 for n in range(17)}, "bad_timing"),
        ("timing_ms", {"x" * 33: 1.0}, "bad_timing"),
        ("timing_ms", {"prepare": True}, "bad_timing"),
        ("timing_ms", {"prepare": "1"}, "bad_timing"),
        ("timing_ms", {"prepare": 10**400}, "bad_timing"),
        ("timing_ms", [1.0], "bad_timing"),
    ],
)
def test_each_wrong_field_has_its_own_reason(field: str, value: Any, code: str) -> None:
    assert reason(body(**{field: value})) == code
    assert reason(json.dumps(body(**{field: value})).encode()) == code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 0),
        ("seq", 2**63 - 1),
        ("ts", 0),
        ("ts", 1e11 - 1),
        ("device_id", "x" * 128),
        ("model_id", "m" * 128),
        ("frame", {"w": 1, "h": 99_999}),
        ("frame", None),
        ("timing_ms", {f"s{n}": 1.0 for n in range(16)}),
        ("timing_ms", {"x" * 32: 0}),
        ("timing_ms", None),
    ],
)
def test_the_last_valid_value_of_each_field_is_accepted(field: str, value: Any) -> None:
    got = decode(body(**{field: value}))
    assert got.seq == (value if field == "seq" else 7)
    if field == "timing_ms" and value:
        assert got.timing_ms == {k: float(v) for k, v in value.items()}


def test_the_largest_vector_and_the_norm_tolerance() -> None:
    wide = FeatureMessage("cam-01", 1, TS, "m-1", unit(MAX_DIM), dtype="float32")
    assert decode(encode(wide)).dim == MAX_DIM
    one = unit(1)
    assert decode_vector(encode_vector(one, "float32"), "float32", 1).tolist() == [pytest.approx(1.0)]
    for scale, ok in [
        (1 + NORM_TOLERANCE * 0.9, True),
        (1 - NORM_TOLERANCE * 0.9, True),
        (1.011, False),
        (0.989, False),
    ]:
        text = encode_vector(unit(64) * scale, "float32")
        if ok:
            assert decode_vector(text, "float32", 64).shape == (64,)
        else:
            with pytest.raises(Rejected) as refused:
                decode_vector(text, "float32", 64)
            assert refused.value.reason == "not_normalized"
    with pytest.raises(Rejected) as refused:
        decode_vector(encode_vector(np.array([np.inf, 0], np.float32), "float32"), "float32", 2)
    assert refused.value.reason == "not_finite"
    with pytest.raises(Rejected) as refused:
        decode_vector(123, "float32", 2)  # type: ignore[arg-type]
    assert refused.value.reason == "bad_vector"
    with pytest.raises(Rejected) as refused:
        encode_vector(unit(2), "float64")  # type: ignore[arg-type]
    assert refused.value.reason == "bad_dtype"


def test_messages_name_the_field() -> None:
    for field, value, needle in [
        ("seq", -1, "'seq'"),
        ("ts", -1, "'ts'"),
        ("dim", 0, "'dim'"),
        ("v", 9, "wire version"),
        ("device_id", "a.b", "'device_id'"),
        ("model_id", "m m", "'model_id'"),
        ("frame", {"w": 0, "h": 1}, "'frame'"),
        ("timing_ms", {"prepare": None}, "'prepare'"),
        ("dtype", "int8", "'dtype'"),
        ("seq", "x", "'seq' must be an integer"),
        ("vector", ..., "'vector'"),
    ]:
        with pytest.raises(Rejected, match=needle):
            decode(body(**{field: value}))
    with pytest.raises(Rejected, match="holds 30 bytes = 15 float16 values, but 'dim' is 16"):
        decode(body(vector=base64.b64encode(np.zeros(15, "<f2").tobytes()).decode()))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "payload is empty"),
        (12, "payload must be bytes, text or an object, got int"),
        (b"[1]", "payload must be a JSON object, got list"),
        (
            b" " * (MAX_PAYLOAD_BYTES + 1),
            f"payload is {MAX_PAYLOAD_BYTES + 1} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit",
        ),
        (b'{"x": NaN}', "the non-JSON constant NaN is not a number"),
        (b"{", "payload is not JSON"),
        ({"x": float("inf")}, "payload holds a non-finite number (inf)"),
        ('{"v": 1, "t": "\ud800"}', "payload is not UTF-8"),
        ({}, "required field 'v' (wire version) is missing"),
        (
            {"v": "a-very-long-version-string-indeed"},
            "wire version 'a-very-long-version-' is not supported (expected 1 or 2)",
        ),
    ],
)
def test_the_message_says_what_is_wrong(payload: Any, message: str) -> None:
    with pytest.raises(Rejected) as refused:
        decode(payload)
    assert str(refused.value).startswith(message), str(refused.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("device_id", 7, "'device_id' must be a string, got int"),
        ("seq", "7", "'seq' must be an integer, got str"),
        ("ts", None, "'ts' must be a number (seconds since the epoch), got NoneType"),
        ("model_id", 1, "'model_id' must be a string, got int"),
        ("dim", "16", "'dim' must be an integer, got str"),
        ("dtype", 2, "'dtype' must be a string, got int"),
        ("vector", 3, "'vector' must be a base64 string, got int"),
        ("vector", "!!", "'vector' is not valid base64: "),
        ("dim", 0, f"'dim' must be in 1..{MAX_DIM}, got 0"),
        ("seq", -1, "'seq' must be in [0, 2^63), got -1"),
        ("ts", -1, "'ts' must be a finite epoch time in seconds, got -1"),
    ],
)
def test_a_wrong_field_is_named_with_what_it_must_be(field: str, value: Any, message: str) -> None:
    with pytest.raises(Rejected) as refused:
        decode(body(**{field: value}))
    assert str(refused.value).startswith(message), str(refused.value)


def test_vector_refusals_say_why() -> None:
    with pytest.raises(Rejected, match=r"^'vector' contains NaN or infinity$"):
        decode_vector(encode_vector(np.array([np.nan, 0], np.float32), "float32"), "float32", 2)
    with pytest.raises(Rejected, match=r"^'vector' must be L2-normalized, its norm is 2\.0000$"):
        decode_vector(encode_vector(np.array([2.0, 0.0], np.float32), "float32"), "float32", 2)
    with pytest.raises(Rejected, match=r"^'vector' must be a base64 string, got int$"):
        decode_vector(5, "float32", 2)  # type: ignore[arg-type]


def test_a_one_dimensional_message_is_valid() -> None:
    assert decode(encode(FeatureMessage("cam-01", 1, TS, "m-1", np.array([1.0], np.float32)))).dim == 1


# --- version 2 (region vectors): each refusal with its reason and words, each boundary exact ------------------
def _rows(count: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rows = np.abs(np.random.default_rng(seed).standard_normal((count, dim))).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _v2(count: int = 3, dtype: Any = "int8", dim: int = 64) -> dict[str, Any]:
    rows = _rows(count, dim)
    body: dict[str, Any] = json.loads(
        encode(FeatureMessage("cam-1", 1, 1_796_000_000.0, "m-1", rows[0], regions=rows, region_dtype=dtype))
    )
    return body


def _refusal(body: dict[str, Any]) -> Rejected:
    with pytest.raises(Rejected) as refused:
        decode(json.dumps(body, separators=(",", ":")).encode())
    return refused.value


def _scaled(factors: list[float]) -> dict[str, Any]:
    body = _v2(len(factors))
    body["scales"] = [s * f for s, f in zip(body["scales"], factors, strict=True)]
    return body


def _float16_with_inf() -> dict[str, Any]:
    body = _v2(2, "float16")
    raw = bytearray(base64.b64decode(body["vectors"]))
    raw[0:2] = np.array([np.inf], "<f2").tobytes()
    return {**body, "vectors": base64.b64encode(bytes(raw)).decode()}


V2_REFUSALS = [
    (
        lambda b: {**b, "dtype": "float32"},
        "bad_dtype",
        "'dtype' of a version-2 message must be one of ['int8', 'float16'], got 'float32'",
    ),
    (
        lambda b: {**b, "vectors": b["vectors"][:8] + "!" + b["vectors"][8:]},
        "bad_base64",
        "'vectors' is not valid base64: ",
    ),
    (
        lambda b: {**b, "vectors": b["vectors"][:-4]},
        "wrong_dim",
        "'vectors' holds 189 bytes, but 'regions' × 'dim' is 3 × 64 int8 values",
    ),
    (
        lambda b: {**b, "scales": [*b["scales"][:2], 0]},
        "bad_scales",
        "'scales' must be a list of 3 positive finite numbers (one per region)",
    ),
    (lambda b: {**b, "regions": 0}, "bad_regions", "'regions' must be in 1..16, got 0"),
    (lambda b: {**b, "regions": "3"}, "bad_type", "'regions' must be an integer, got str"),
    (lambda b: {**b, "vectors": 5}, "bad_type", "'vectors' must be a base64 string, got int"),
    (lambda b: {**b, "timing_ms": [1]}, "bad_timing", "'timing_ms' must be an object of at most 16 stage timings"),
    (
        lambda b: {**b, "timing_ms": {"k" * 40: 1}},
        "bad_timing",
        f"'timing_ms' entry {'k' * 32!r} must be a finite number",
    ),
    (
        lambda b: {**b, "frame": {"w": 0, "h": 1}},
        "bad_frame",
        '\'frame\' must be {"w": int, "h": int} with positive sizes',
    ),
    (lambda b: _scaled([1.0, 0.5, 1.2]), "not_normalized", "region 1 must be L2-normalized, its norm is 0.5"),
    (lambda b: _scaled([1.0, 1.3, 0.8]), "not_normalized", "region 1 must be L2-normalized, its norm is 1.3"),
    (lambda b: {**_v2(2, "float16"), "scales": [1.0, 1.0]}, "bad_scales", "'scales' belongs to int8 vectors only"),
    (lambda b: _float16_with_inf(), "not_finite", "'vectors' contains NaN or infinity"),
]


@pytest.mark.parametrize(("change", "reason", "words"), V2_REFUSALS)
def test_a_version_2_refusal_names_its_reason_and_what_is_wrong(change: Any, reason: str, words: str) -> None:
    refused = _refusal(change(_v2()))
    assert (refused.reason, str(refused)[: len(words)]) == (reason, words)


def test_version_2_boundaries_are_exact() -> None:
    from model.contracts.wire import MAX_REGIONS, MAX_V2_BYTES

    for count in (1, MAX_REGIONS):
        out = decode(json.dumps(_v2(count)).encode())
        assert out.regions is not None and out.regions.shape == (count, 64) and out.regions.dtype == np.float32
    body = _v2(3)
    body["pad"] = ""
    size = len(json.dumps(body, separators=(",", ":")))
    body["pad"] = "x" * (MAX_V2_BYTES - size)
    assert decode(json.dumps(body, separators=(",", ":")).encode()).regions is not None  # exactly the budget
    body["pad"] += "x"
    refused = _refusal(body)
    assert (refused.reason, str(refused)) == (
        "oversize",
        f"a version-2 message is {MAX_V2_BYTES + 1} bytes, over its {MAX_V2_BYTES}-byte budget",
    )


def test_encoders_default_to_the_wire_dtypes_and_name_a_wrong_one() -> None:
    from model.contracts.wire import decode_regions, encode_regions

    rows = _rows(2)
    text, scales = encode_regions(rows)  # int8 by default: scales travel with it
    assert scales is not None and decode_regions(text, "int8", 2, 64, scales).shape == (2, 64)
    assert decode_vector(encode_vector(rows[0]), "float16", 64).shape == (64,)  # float16 by default
    with pytest.raises(Rejected, match=r"^region dtype must be one of \['int8', 'float16'\], got 'float32'$") as bad:
        encode_regions(rows, "float32")  # type: ignore[arg-type]
    assert bad.value.reason == "bad_dtype"
    with pytest.raises(Rejected, match=r"^dtype must be one of \['float16', 'float32'\], got 'int4'$"):
        encode_vector(rows[0], "int4")  # type: ignore[arg-type]


def test_the_encoder_refuses_what_it_cannot_send_and_writes_compact_rounded_json() -> None:
    from model.contracts.wire import MAX_V2_BYTES

    rows = _rows(2)

    def sent(**kw: Any) -> FeatureMessage:
        fields: dict[str, Any] = {
            "device_id": "cam-1",
            "seq": 1,
            "ts": 1_796_000_000.0,
            "model_id": "m-1",
            "vector": rows[0],
            "regions": rows,
            "region_dtype": "int8",
        }
        return FeatureMessage(**{**fields, **kw})

    for message, reason, words in [
        (sent(regions=rows[0]), "bad_regions", "regions must be [1..16, dim], got shape [64]"),
        (sent(regions=_rows(17)), "bad_regions", "regions must be [1..16, dim], got shape [17, 64]"),
        (sent(regions=rows * np.nan), "not_finite", "region vectors contain NaN or infinity"),
        (sent(regions=None, vector=rows[0] * np.nan), "not_finite", "vector contains NaN or infinity"),
        (sent(regions=_rows(16, 1280), region_dtype="float16"), "oversize", "encoded message is "),
        (sent(device_id="x" * 100 + "."), "bad_device_id", f"got {('x' * 100 + '.')[:80]!r}"),
        (sent(model_id="bad id"), "bad_model_id", "got 'bad id'"),
    ]:
        with pytest.raises(Rejected) as refused:
            encode(message)
        assert refused.value.reason == reason and words in str(refused.value), (words, str(refused.value))
    assert str(refused.value).startswith("'model_id' must match ")
    with pytest.raises(Rejected, match=rf"over the {MAX_V2_BYTES}-byte limit$"):
        encode(sent(regions=_rows(16, 1280), region_dtype="float16"))
    payload = encode(sent(ts=1_796_000_000.1234567, timing_ms={"featurize": 1.23456}))
    body = json.loads(payload)
    assert b" " not in payload and body["ts"] == 1_796_000_000.123457 and body["timing_ms"] == {"featurize": 1.235}
    with pytest.raises(ValueError):
        encode(sent(timing_ms={"featurize": float("nan")}))  # never JSON that strict readers refuse
    flat = json.loads(encode(sent(regions=None, vector=rows[:1])))  # a [1, D] vector is sent as [D]
    assert flat["dim"] == 64 and flat["v"] == 1


def test_a_decoded_message_says_which_dtypes_it_came_in() -> None:
    rows = _rows(2)
    v1 = decode(encode(FeatureMessage("cam-1", 1, 1_796_000_000.0, "m-1", rows[0], dtype="float32")))
    assert (v1.dtype, v1.region_dtype, v1.regions) == ("float32", "int8", None)
    for dtype in ("int8", "float16"):
        v2 = decode(json.dumps(_v2(2, dtype)).encode())
        assert (v2.dtype, v2.region_dtype) == ("float16", dtype)
