"""Property-based tests of the v1 wire codec: any input is decoded or rejected with a reason, nothing else.

"Nothing else" is the property: a decode that raises anything but :class:`Rejected` would escape the
search handler's ``except Rejected`` and fail the invocation (an IoT retry storm for a poison message).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.contracts.errors import Rejected
from model.contracts.wire import FeatureMessage, decode, encode
from tests.hardening.conftest import count_case, count_escape

REASONS = {
    "bad_dtype",
    "bad_regions",
    "bad_scales",
    "bad_vector",
    "bad_base64",
    "wrong_dim",
    "not_finite",
    "not_normalized",
    "bad_device_id",
    "bad_model_id",
    "missing_field",
    "bad_type",
    "not_json",
    "oversize",
    "empty",
    "not_object",
    "unknown_version",
    "bad_seq",
    "bad_ts",
    "bad_frame",
    "bad_timing",
    "too_deep",
    "bad_text",
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values that break naive validators: huge and negative numbers, NaN/inf, bools posing as ints,
# long and non-ASCII strings (RTL marks, NUL, emoji, lone surrogates), nested containers.
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**30, -(10**30), 2**63, 2**64, 2**1000, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(min_size=200, max_size=400),
    st.sampled_from(["", "\u202ecam", "cam\x00", "cam/+/#", "💥" * 50, "a" * 5000, "\ud800", "../../etc"]),
)
hostile_values = st.recursive(
    hostile_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)


def valid_body(dim: int = 16, seq: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(seq)
    vector = rng.standard_normal(dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    payload = encode(
        FeatureMessage(
            "cam-01", seq, 1_763_700_000.5, "tiny-fp32-0123abcd", vector, 640, 480, {"prepare": 1.0, "featurize": 2.0}
        )
    )
    body: dict[str, Any] = json.loads(payload)
    return body


def check_decode(payload: Any, kind: str) -> FeatureMessage | None:
    """Decode; a Rejected must carry a known reason; any other exception is an escape (a failure)."""
    count_case(kind)
    try:
        return decode(payload)
    except Rejected as exc:
        assert exc.reason in REASONS, f"unknown reason {exc.reason!r}"
        assert str(exc), "a rejection must say why"
        return None
    except Exception:
        count_escape(kind)
        raise


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_rejected_with_a_reason(data: bytes) -> None:
    assert check_decode(data, "wire: arbitrary bytes") is None


@FUZZ
@given(st.text(max_size=512))
def test_arbitrary_text_is_rejected_with_a_reason(text: str) -> None:
    assert check_decode(text, "wire: arbitrary text") is None


@FUZZ
@given(hostile_values)
def test_json_of_the_wrong_shape(value: Any) -> None:
    for payload in (value, json.dumps(value, allow_nan=True).encode()):
        check_decode(payload, "wire: wrong-shape JSON")


FIELDS = ["v", "device_id", "seq", "ts", "model_id", "dim", "dtype", "vector", "frame", "timing_ms"]


@FUZZ
@given(st.sampled_from(FIELDS), hostile_values, st.booleans())
def test_one_field_replaced_by_a_hostile_value(field: str, value: Any, as_bytes: bool) -> None:
    body = valid_body()
    body[field] = value
    payload = json.dumps(body, allow_nan=True).encode() if as_bytes else body
    message = check_decode(payload, "wire: hostile field value")
    if message is not None:
        # Accepted only when the hostile value happened to be a valid one: then it must round-trip.
        assert message.device_id == body["device_id"] and message.seq == body["seq"]


@FUZZ
@given(st.sampled_from(FIELDS[:8]))
def test_missing_required_field(field: str) -> None:
    body = valid_body()
    del body[field]
    assert check_decode(body, "wire: missing field") is None


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["float16", "float32"]), st.integers(min_value=1, max_value=200))
def test_vector_garbage_and_wrong_lengths(raw: bytes, dtype: str, dim: int) -> None:
    body = valid_body()
    body.update(vector=base64.b64encode(raw).decode(), dtype=dtype, dim=dim)
    message = check_decode(body, "wire: vector bytes/length")
    if message is not None:
        assert message.dim == dim and np.isclose(np.linalg.norm(message.vector), 1.0, atol=1e-2)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_base64_garbage(text: str) -> None:
    body = valid_body()
    body["vector"] = text
    assert check_decode(body, "wire: base64 garbage") is None


@FUZZ
@given(st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e6, 100.0]), st.integers(0, 15))
def test_non_finite_or_unnormalized_components(value: float, position: int) -> None:
    body = valid_body()
    vector = np.frombuffer(base64.b64decode(body["vector"]), dtype="<f2").copy()
    vector[position] = value
    body["vector"] = base64.b64encode(vector.astype("<f2").tobytes()).decode()
    assert check_decode(body, "wire: NaN/inf/unnormalized vector") is None


@FUZZ
@given(st.text(min_size=1, max_size=300))
def test_unicode_and_long_ids(device_id: str) -> None:
    body = valid_body()
    body["device_id"] = device_id
    message = check_decode(body, "wire: unicode/long device id")
    if message is not None:  # only thing-name characters get through
        assert message.device_id.isascii() and len(message.device_id) <= 128 and "/" not in message.device_id


def test_oversize_and_deep_nesting_are_rejected_before_work() -> None:
    for payload, reason in [
        (b"{" + b" " * (128 * 1024) + b"}", "oversize"),
        (b"[" * 70_000 + b"]" * 70_000, "oversize"),
        (b"[" * 20_000 + b"]" * 20_000, "too_deep"),
        (b"[" * 17 + b"]" * 17, "too_deep"),
    ]:
        count_case("wire: oversize/deep nesting")
        try:
            decode(payload)
        except Rejected as exc:
            assert exc.reason == reason
        else:
            raise AssertionError("accepted")


HUGE_NUMBERS = [
    ("ts", 10**400),
    ("seq", 10**400),
    ("dim", 10**400),
    ("ts", -(10**400)),
    ("frame", {"w": 10**400, "h": 10**400}),
    ("timing_ms", {"featurize": 10**400}),
]


def test_huge_integers_are_rejected_not_crashed() -> None:
    """Python ints have no size limit: ``float(10**400)`` raises OverflowError, a 5,000-digit literal ValueError."""
    for field, value in HUGE_NUMBERS:
        body = valid_body()
        body[field] = value
        assert check_decode(body, "wire: huge integers") is None
        text = json.dumps(body).encode()
        assert check_decode(text, "wire: huge integers") is None
    digits = json.dumps(valid_body()).replace('"seq": 7', '"seq": ' + "9" * 5000).encode()
    assert check_decode(digits, "wire: huge integers") is None


@FUZZ
@given(st.integers(1, 64), st.integers(0, 2**63 - 1), st.sampled_from(["float16", "float32"]))
def test_valid_messages_round_trip(dim: int, seq: int, dtype: str) -> None:
    rng = np.random.default_rng(dim)
    vector = rng.standard_normal(dim).astype(np.float32) + 0.1
    vector /= np.linalg.norm(vector)
    message = FeatureMessage("cam-01", seq, 1_763_700_000.0, "m-1", vector, dtype=dtype)  # type: ignore[arg-type]
    decoded = decode(encode(message))
    assert decoded.seq == seq and decoded.dim == dim
    assert float(np.dot(decoded.vector, vector)) > 0.999
