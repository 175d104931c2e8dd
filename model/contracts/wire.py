"""Encode and decode ``visualsearch/{device_id}/features`` messages, version 1.

The device encodes with :func:`encode`; the search (in the Lambda, or behind the local rule bridge) decodes
with :func:`decode`. Every way a message can be wrong raises :class:`~model.contracts.errors.Rejected` with a
``reason`` code (for counters, listed in :mod:`model.contracts.reasons`) and a message that says what was
wrong, so a bad message is rejected, logged and counted — never half-processed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from model.contracts import bounded_json
from model.contracts.errors import Rejected
from model.contracts.limits import MAX_DIM, MAX_PAYLOAD_BYTES
from model.contracts.thing_name import RULE as THING_NAME_RULE
from model.contracts.thing_name import is_thing_name

WIRE_VERSION = 1
NORM_TOLERANCE = 1e-2
"""How far from 1.0 a vector's L2 norm may be and still count as normalized (float16 on the wire)."""
DTYPES: dict[str, np.dtype[Any]] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
MODEL_ID_RE = re.compile(r"[A-Za-z0-9_.:+-]{1,128}")
"""Used with ``fullmatch``: ``$`` would let a trailing newline through."""

Dtype = Literal["float16", "float32"]


@dataclass
class FeatureMessage:
    """A decoded (or to-be-encoded) v1 feature message. ``vector`` is float32 ``[dim]``."""

    device_id: str
    seq: int
    ts: float
    model_id: str
    vector: np.ndarray
    frame_w: int | None = None
    frame_h: int | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)
    dtype: Dtype = "float16"

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


def encode_vector(vector: np.ndarray, dtype: Dtype = "float16") -> str:
    """L2-normalized vector → base64 of little-endian ``dtype`` bytes."""
    if dtype not in DTYPES:
        raise Rejected("bad_dtype", f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return base64.b64encode(np.asarray(vector, dtype=DTYPES[dtype]).tobytes()).decode("ascii")


def decode_vector(text: str, dtype: str, dim: int) -> np.ndarray:
    """base64 → float32 ``[dim]``; checks length, finiteness and unit norm."""
    if dtype not in DTYPES:
        raise Rejected("bad_dtype", f"'dtype' must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not isinstance(text, str):
        raise Rejected("bad_vector", f"'vector' must be a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise Rejected("bad_base64", f"'vector' is not valid base64: {exc}") from exc
    itemsize = DTYPES[dtype].itemsize
    if len(raw) != dim * itemsize:
        raise Rejected(
            "wrong_dim",
            f"'vector' holds {len(raw)} bytes = {len(raw) / itemsize:g} {dtype} values, but 'dim' is {dim}",
        )
    vector = np.frombuffer(raw, dtype=DTYPES[dtype]).astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise Rejected("not_finite", "'vector' contains NaN or infinity")
    norm = float(np.linalg.norm(vector.astype(np.float64)))  # float64: huge float32 values must not overflow
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise Rejected("not_normalized", f"'vector' must be L2-normalized, its norm is {norm:.4f}")
    return vector


def encode(message: FeatureMessage) -> bytes:
    """Message → compact JSON bytes (≈ 3.4 KB for a 1280-d float16 vector)."""
    _check_identity(message.device_id, message.model_id)
    vector = np.asarray(message.vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vector)):
        raise Rejected("not_finite", "vector contains NaN or infinity")
    body: dict[str, Any] = {
        "v": WIRE_VERSION,
        "device_id": message.device_id,
        "seq": int(message.seq),
        "ts": round(float(message.ts), 6),
        "model_id": message.model_id,
        "dim": int(vector.shape[0]),
        "dtype": message.dtype,
        "vector": encode_vector(vector, message.dtype),
    }
    if message.frame_w is not None and message.frame_h is not None:
        body["frame"] = {"w": int(message.frame_w), "h": int(message.frame_h)}
    if message.timing_ms:
        body["timing_ms"] = {k: round(float(v), 3) for k, v in message.timing_ms.items()}
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("oversize", f"encoded message is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    return payload


def _check_identity(device_id: Any, model_id: Any) -> None:
    if not is_thing_name(device_id):
        raise Rejected("bad_device_id", f"'device_id' must be {THING_NAME_RULE}, got {str(device_id)[:80]!r}")
    if not isinstance(model_id, str) or not MODEL_ID_RE.fullmatch(model_id):
        raise Rejected("bad_model_id", f"'model_id' must match {MODEL_ID_RE.pattern}, got {str(model_id)[:80]!r}")


def _require(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    if key not in body:
        raise Rejected("missing_field", f"required field '{key}' is missing")
    value = body[key]
    # bool is an int subclass: a JSON true must not pass as a sequence number.
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise Rejected("bad_type", f"'{key}' must be {what}, got {type(value).__name__}")
    return value


def decode(payload: bytes | str | dict[str, Any]) -> FeatureMessage:
    """Validate and decode a v1 message (raw bytes, text, or an already-parsed dict such as a Lambda event)."""
    if isinstance(payload, dict):
        body = bounded_json.check(payload, what="payload")
    else:
        if isinstance(payload, str):
            payload = payload.encode("utf-8", errors="surrogatepass")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise Rejected("not_json", f"payload must be bytes, text or an object, got {type(payload).__name__}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Rejected("oversize", f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
        if len(payload) == 0:
            raise Rejected("empty", "payload is empty")
        body = bounded_json.loads(payload, max_bytes=MAX_PAYLOAD_BYTES, what="payload")
    if not isinstance(body, dict):
        raise Rejected("not_object", f"payload must be a JSON object, got {type(body).__name__}")
    version = body.get("v")
    if "v" not in body:
        raise Rejected("missing_field", "required field 'v' (wire version) is missing")
    if isinstance(version, bool) or version != WIRE_VERSION:
        raise Rejected(
            "unknown_version",
            f"wire version {str(version)[:20]!r} is not supported (expected {WIRE_VERSION})",
        )
    device_id = _require(body, "device_id", (str,), "a string")
    seq = _require(body, "seq", (int,), "an integer")
    ts = _require(body, "ts", (int, float), "a number (seconds since the epoch)")
    model_id = _require(body, "model_id", (str,), "a string")
    dim = _require(body, "dim", (int,), "an integer")
    dtype = _require(body, "dtype", (str,), "a string")
    vector_text = _require(body, "vector", (str,), "a base64 string")
    _check_identity(device_id, model_id)
    if not 0 <= seq < 2**63:
        raise Rejected("bad_seq", f"'seq' must be in [0, 2^63), got {seq}")
    if not _finite(ts) or not 0 <= ts < 1e11:
        raise Rejected("bad_ts", f"'ts' must be a finite epoch time in seconds, got {ts}")
    if not 0 < dim <= MAX_DIM:
        raise Rejected("wrong_dim", f"'dim' must be in 1..{MAX_DIM}, got {dim}")
    vector = decode_vector(vector_text, dtype, dim)
    frame_w = frame_h = None
    frame = body.get("frame")
    if frame is not None:
        if not isinstance(frame, dict) or not all(
            isinstance(frame.get(k), int) and not isinstance(frame.get(k), bool) and 0 < frame[k] < 100_000
            for k in ("w", "h")
        ):
            raise Rejected("bad_frame", '\'frame\' must be {"w": int, "h": int} with positive sizes')
        frame_w, frame_h = frame["w"], frame["h"]
    timing: dict[str, float] = {}
    raw_timing = body.get("timing_ms")
    if raw_timing is not None:
        if not isinstance(raw_timing, dict) or len(raw_timing) > 16:
            raise Rejected("bad_timing", "'timing_ms' must be an object of at most 16 stage timings")
        for key, value in raw_timing.items():
            if (
                not isinstance(key, str)
                or len(key) > 32
                or isinstance(value, bool)
                or not isinstance(value, int | float)
                or not _finite(value)
            ):
                raise Rejected("bad_timing", f"'timing_ms' entry {str(key)[:32]!r} must be a finite number")
            timing[key] = float(value)
    return FeatureMessage(
        device_id=device_id,
        seq=seq,
        ts=float(ts),
        model_id=model_id,
        vector=vector,
        frame_w=frame_w,
        frame_h=frame_h,
        timing_ms=timing,
        dtype=dtype,
    )


def _finite(value: float) -> bool:
    """``math.isfinite`` that answers False for integers too large for a float instead of raising."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
