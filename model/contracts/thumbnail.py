"""The query thumbnail on ``visualsearch/{device_id}/thumbnail``: a small JPEG of what the camera searched with.

Opt-in on the device (``thumbnail.enabled``), at most once a second, so the web app can show what the camera
saw next to what it matched. JSON like every other message, so the IoT rule stays ``SELECT *``::

    {"v": 1, "device_id": "cam-01", "seq": 1796020415918, "ts": 1796020415.118, "jpeg": "<base64>"}

``seq``/``ts`` are those of the feature message sent from the same frame. The JPEG is at most
:data:`MAX_JPEG_BYTES`; the cloud checks the size and the JPEG markers, never decodes it (the browser does).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from model.contracts import bounded_json
from model.contracts.errors import Rejected
from model.contracts.thing_name import RULE, is_thing_name
from model.contracts.topics import topic

THUMBNAIL_VERSION = 1
MAX_JPEG_BYTES = 8 * 1024
MAX_MESSAGE_BYTES = 16 * 1024
"""base64 makes 8 KB into ≈ 11 KB; the rest is the JSON around it."""


def thumbnail_topic(device_id: str) -> str:
    return topic(device_id, "thumbnail")


@dataclass(frozen=True)
class Thumbnail:
    device_id: str
    seq: int
    ts: float
    jpeg: bytes


def encode_thumbnail(thumbnail: Thumbnail) -> bytes:
    _check(thumbnail)
    body = {
        "v": THUMBNAIL_VERSION,
        "device_id": thumbnail.device_id,
        "seq": thumbnail.seq,
        "ts": round(thumbnail.ts, 6),
        "jpeg": base64.b64encode(thumbnail.jpeg).decode("ascii"),
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode_thumbnail(payload: bytes | str | dict[str, Any]) -> Thumbnail:
    """Validate a thumbnail message (raw bytes or the IoT rule's parsed object); raises :class:`Rejected`."""
    if isinstance(payload, dict):
        body = payload
    else:
        body = bounded_json.loads(payload, max_bytes=MAX_MESSAGE_BYTES, what="thumbnail message")
    if not isinstance(body, dict):
        raise Rejected("not_object", f"thumbnail message must be a JSON object, got {type(body).__name__}")
    if body.get("v") != THUMBNAIL_VERSION or isinstance(body.get("v"), bool):
        raise Rejected("unknown_version", f"thumbnail version {str(body.get('v'))[:20]!r} is not supported")
    seq, ts, text = body.get("seq"), body.get("ts"), body.get("jpeg")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise Rejected("bad_type", "'seq' must be an integer")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise Rejected("bad_type", "'ts' must be a number (seconds since the epoch)")
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_BYTES:
        raise Rejected("bad_jpeg", f"'jpeg' must be a base64 string of at most {MAX_JPEG_BYTES} bytes")
    try:
        jpeg = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise Rejected("bad_base64", f"'jpeg' is not valid base64: {exc}") from None
    thumbnail = Thumbnail(str(body.get("device_id")), seq, float(ts), jpeg)
    _check(thumbnail, body.get("device_id"))
    return thumbnail


def _check(thumbnail: Thumbnail, device_id: Any = None) -> None:
    if not is_thing_name(thumbnail.device_id if device_id is None else device_id):
        raise Rejected("bad_device_id", f"'device_id' must be {RULE}")
    if not 0 <= thumbnail.seq < 2**63:
        raise Rejected("bad_seq", f"'seq' must be in [0, 2^63), got {thumbnail.seq}")
    if not math.isfinite(thumbnail.ts) or not 0 <= thumbnail.ts < 1e11:
        raise Rejected("bad_ts", f"'ts' must be a finite epoch time in seconds, got {thumbnail.ts}")
    # SOI at the start, EOI at the end: a JPEG the browser can show, not arbitrary bytes.
    if not (thumbnail.jpeg.startswith(b"\xff\xd8\xff") and thumbnail.jpeg.endswith(b"\xff\xd9")):
        raise Rejected("bad_jpeg", "'jpeg' is not a complete JPEG (SOI ... EOI)")
    if len(thumbnail.jpeg) > MAX_JPEG_BYTES:
        raise Rejected("oversize", f"thumbnail is {len(thumbnail.jpeg)} bytes, over {MAX_JPEG_BYTES}")
