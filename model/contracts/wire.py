"""Encode and decode ``visualsearch/{device_id}/features`` messages, versions 1 and 2.

- Version 1 carries one vector (``vector``; float16 or float32).
- Version 2 carries several region vectors of one frame from one inference (``vectors``: ``regions`` × ``dim``
  values; int8 with one scale per region, or float16), at most :data:`MAX_V2_BYTES` per message. The search
  scores every region and keeps each item's best (docs/match-quality.md).

The device encodes with :func:`encode` (version 2 when the message has ``regions``); the search (in the
Lambda, or behind the local rule bridge) decodes either version with :func:`decode`, so a device on version 1
keeps getting matches. Every way a message can be wrong raises :class:`~model.contracts.errors.Rejected` with
a ``reason`` code (for counters, listed in :mod:`model.contracts.reasons`) and a message that says what was
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
"""The single-vector version (what every device before region vectors sends; still accepted)."""
REGIONS_WIRE_VERSION = 2
WIRE_VERSIONS = (WIRE_VERSION, REGIONS_WIRE_VERSION)
MAX_V2_BYTES = 8 * 1024
"""Byte budget of one version-2 message (the encoder refuses more; so does the decoder)."""
MAX_REGIONS = 16
REGION_DTYPES = ("int8", "float16")
INT8_MAX = 127
NORM_TOLERANCE = 1e-2
"""How far from 1.0 a vector's L2 norm may be and still count as normalized (float16 on the wire)."""
DTYPES: dict[str, np.dtype[Any]] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
MODEL_ID_RE = re.compile(r"[A-Za-z0-9_.:+-]{1,128}")
"""Used with ``fullmatch``: ``$`` would let a trailing newline through."""

Dtype = Literal["float16", "float32"]
RegionDtype = Literal["int8", "float16"]


@dataclass
class FeatureMessage:
    """A decoded (or to-be-encoded) feature message. ``vector`` is float32 ``[dim]``.

    ``regions`` (float32 ``[R, dim]``, unit rows) makes it a version-2 message: every region vector of the
    frame; ``vector`` is then ``regions[0]``. ``region_dtype`` is their encoding on the wire.
    """

    device_id: str
    seq: int
    ts: float
    model_id: str
    vector: np.ndarray
    frame_w: int | None = None
    frame_h: int | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)
    dtype: Dtype = "float16"
    regions: np.ndarray | None = None
    region_dtype: RegionDtype = "int8"

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    @property
    def version(self) -> int:
        return WIRE_VERSION if self.regions is None else REGIONS_WIRE_VERSION

    @property
    def vectors(self) -> np.ndarray:
        """float32 ``[R, dim]``: the region vectors (version 1: the one vector as a single region)."""
        return self.vector[None] if self.regions is None else self.regions


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


def encode_regions(vectors: np.ndarray, dtype: RegionDtype = "int8") -> tuple[str, list[float] | None]:
    """``[R, D]`` unit vectors → (base64 of R×D values, per-region scales for int8).

    int8: each row ``q = round(v / s)`` with ``s = max|v| / 127`` (symmetric, per row); the decoder multiplies
    back and renormalizes. Cosine to the original is about 0.9999 for a 1280-d feature vector.
    """
    if dtype == "float16":
        return base64.b64encode(np.asarray(vectors, dtype="<f2").tobytes()).decode("ascii"), None
    if dtype != "int8":
        raise Rejected("bad_dtype", f"region dtype must be one of {list(REGION_DTYPES)}, got {dtype!r}")
    rows = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(rows).max(axis=1)
    scales = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(rows / scales[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return base64.b64encode(quantized.tobytes()).decode("ascii"), [float(f"{s:.9g}") for s in scales]


def decode_regions(text: str, dtype: str, regions: int, dim: int, scales: Any) -> np.ndarray:
    """base64 (+ int8 scales) → float32 ``[regions, dim]`` unit rows; checks length, scales, finiteness, norm."""
    if dtype not in REGION_DTYPES:
        raise Rejected(
            "bad_dtype", f"'dtype' of a version-2 message must be one of {list(REGION_DTYPES)}, got {dtype!r}"
        )
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise Rejected("bad_base64", f"'vectors' is not valid base64: {exc}") from exc
    itemsize = 1 if dtype == "int8" else 2
    if len(raw) != regions * dim * itemsize:
        raise Rejected(
            "wrong_dim", f"'vectors' holds {len(raw)} bytes, but 'regions' × 'dim' is {regions} × {dim} {dtype} values"
        )
    if dtype == "float16":
        if scales is not None:
            raise Rejected("bad_scales", "'scales' belongs to int8 vectors only")
        rows = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(regions, dim)
    else:
        if (
            not isinstance(scales, list)
            or len(scales) != regions
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and _finite(x) and x > 0 for x in scales)
        ):
            raise Rejected(
                "bad_scales", f"'scales' must be a list of {regions} positive finite numbers (one per region)"
            )
        rows = np.frombuffer(raw, dtype=np.int8).astype(np.float32).reshape(regions, dim)
        rows *= np.asarray(scales, dtype=np.float32)[:, None]
    if not np.all(np.isfinite(rows)):
        raise Rejected("not_finite", "'vectors' contains NaN or infinity")
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > NORM_TOLERANCE:
        raise Rejected("not_normalized", f"region {worst} must be L2-normalized, its norm is {norms[worst]:.4f}")
    return (rows / norms[:, None]).astype(np.float32)


def encode(message: FeatureMessage) -> bytes:
    """Message → compact JSON bytes (v1 ≈ 3.4 KB for a 1280-d float16 vector; v2 within :data:`MAX_V2_BYTES`)."""
    _check_identity(message.device_id, message.model_id)
    body: dict[str, Any] = {
        "v": message.version,
        "device_id": message.device_id,
        "seq": int(message.seq),
        "ts": round(float(message.ts), 6),
        "model_id": message.model_id,
    }
    body.update(_vector_fields(message))
    if message.frame_w is not None and message.frame_h is not None:
        body["frame"] = {"w": int(message.frame_w), "h": int(message.frame_h)}
    if message.timing_ms:
        body["timing_ms"] = {k: round(float(v), 3) for k, v in message.timing_ms.items()}
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    limit = MAX_PAYLOAD_BYTES if message.regions is None else MAX_V2_BYTES
    if len(payload) > limit:
        raise Rejected("oversize", f"encoded message is {len(payload)} bytes, over the {limit}-byte limit")
    return payload


def _vector_fields(message: FeatureMessage) -> dict[str, Any]:
    if message.regions is None:
        vector = np.asarray(message.vector, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(vector)):
            raise Rejected("not_finite", "vector contains NaN or infinity")
        return {"dim": int(vector.shape[0]), "dtype": message.dtype, "vector": encode_vector(vector, message.dtype)}
    rows = np.asarray(message.regions, dtype=np.float32)
    if rows.ndim != 2 or not 1 <= rows.shape[0] <= MAX_REGIONS:
        raise Rejected("bad_regions", f"regions must be [1..{MAX_REGIONS}, dim], got shape {list(rows.shape)}")
    if not np.all(np.isfinite(rows)):
        raise Rejected("not_finite", "region vectors contain NaN or infinity")
    text, scales = encode_regions(rows, message.region_dtype)
    fields: dict[str, Any] = {
        "regions": int(rows.shape[0]),
        "dim": int(rows.shape[1]),
        "dtype": message.region_dtype,
        "vectors": text,
    }
    if scales is not None:
        fields["scales"] = scales
    return fields


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
    """Validate and decode a v1 or v2 message (raw bytes, text, or an already-parsed dict such as a Lambda event)."""
    body = _envelope(payload)
    version = body.get("v")
    if "v" not in body:
        raise Rejected("missing_field", "required field 'v' (wire version) is missing")
    if isinstance(version, bool) or version not in WIRE_VERSIONS:
        raise Rejected(
            "unknown_version",
            f"wire version {str(version)[:20]!r} is not supported (expected {' or '.join(map(str, WIRE_VERSIONS))})",
        )
    device_id = _require(body, "device_id", (str,), "a string")
    seq = _require(body, "seq", (int,), "an integer")
    ts = _require(body, "ts", (int, float), "a number (seconds since the epoch)")
    model_id = _require(body, "model_id", (str,), "a string")
    dim = _require(body, "dim", (int,), "an integer")
    dtype = _require(body, "dtype", (str,), "a string")
    _check_identity(device_id, model_id)
    if not 0 <= seq < 2**63:
        raise Rejected("bad_seq", f"'seq' must be in [0, 2^63), got {seq}")
    if not _finite(ts) or not 0 <= ts < 1e11:
        raise Rejected("bad_ts", f"'ts' must be a finite epoch time in seconds, got {ts}")
    if not 0 < dim <= MAX_DIM:
        raise Rejected("wrong_dim", f"'dim' must be in 1..{MAX_DIM}, got {dim}")
    regions: np.ndarray | None = None
    if version == WIRE_VERSION:
        vector = decode_vector(_require(body, "vector", (str,), "a base64 string"), dtype, dim)
    else:
        regions = _decode_v2_vectors(body, payload, dtype, dim)
        vector = regions[0]
    frame_w, frame_h = _frame(body.get("frame"))
    return FeatureMessage(
        device_id=device_id,
        seq=seq,
        ts=float(ts),
        model_id=model_id,
        vector=vector,
        frame_w=frame_w,
        frame_h=frame_h,
        timing_ms=_timing(body.get("timing_ms")),
        dtype="float16" if regions is not None else dtype,
        regions=regions,
        region_dtype=dtype if regions is not None else "int8",
    )


def _envelope(payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The payload as a JSON object within the size and shape limits (an IoT rule event arrives parsed)."""
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
    return body


def _decode_v2_vectors(body: dict[str, Any], payload: Any, dtype: str, dim: int) -> np.ndarray:
    # An already-parsed event (the IoT rule's) is measured as the compact JSON the device sent.
    if isinstance(payload, dict):
        size = len(json.dumps(body, separators=(",", ":"), default=str).encode("utf-8"))
    else:
        size = len(payload.encode("utf-8", errors="surrogatepass") if isinstance(payload, str) else payload)
    if size > MAX_V2_BYTES:
        raise Rejected("oversize", f"a version-2 message is {size} bytes, over its {MAX_V2_BYTES}-byte budget")
    count = _require(body, "regions", (int,), "an integer")
    if not 1 <= count <= MAX_REGIONS:
        raise Rejected("bad_regions", f"'regions' must be in 1..{MAX_REGIONS}, got {count}")
    text = _require(body, "vectors", (str,), "a base64 string")
    return decode_regions(text, dtype, count, dim, body.get("scales"))


def _frame(frame: Any) -> tuple[int | None, int | None]:
    if frame is None:
        return None, None
    if not isinstance(frame, dict) or not all(
        isinstance(frame.get(k), int) and not isinstance(frame.get(k), bool) and 0 < frame[k] < 100_000
        for k in ("w", "h")
    ):
        raise Rejected("bad_frame", '\'frame\' must be {"w": int, "h": int} with positive sizes')
    return frame["w"], frame["h"]


def _timing(raw_timing: Any) -> dict[str, float]:
    timing: dict[str, float] = {}
    if raw_timing is None:
        return timing
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
    return timing


def _finite(value: float) -> bool:
    """``math.isfinite`` that answers False for integers too large for a float instead of raising."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
