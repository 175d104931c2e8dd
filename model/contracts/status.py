"""The status message on ``visualsearch/{device_id}/status``: built on the device, parsed on every side.

Sent every ``status_interval_s`` and whenever the state changes; the MQTT last will (and a clean stop)
carries the :func:`offline_payload` form. The fields answer what operators ask first: is it running, on which
accelerator, how fast, is anything being lost. The device encodes with :func:`encode_status`; the local rule
bridge and the cloud's status handler check with :func:`parse_status`, so all three apply the same size,
version and state rules. A bad status raises :class:`~model.contracts.errors.Rejected`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from model.contracts import bounded_json
from model.contracts.errors import Rejected
from model.contracts.limits import MAX_STATUS_BYTES
from model.contracts.thing_name import RULE as THING_NAME_RULE
from model.contracts.thing_name import is_thing_name

STATUS_VERSION = 1
STATES = ("online", "degraded", "offline")
State = Literal["online", "degraded", "offline"]


def build_status(
    *,
    device_id: str,
    state: State,
    fps: float,
    backend: str,
    device: str,
    model_id: str,
    featurize_ms: dict[str, float] | None,
    captured: int,
    published: int,
    skipped: int,
    dropped: int,
    queue_depth: int,
    source: dict[str, Any],
    last_error: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": STATUS_VERSION,
        "device_id": device_id,
        "ts": round(time.time(), 3),
        "state": state,
        "fps": round(fps, 2),
        "backend": backend,
        "device": device,
        "model_id": model_id,
        "featurize_ms": featurize_ms or {"p50": None, "p95": None},
        "frames": {"captured": captured, "published": published, "skipped": skipped, "dropped": dropped},
        "queue_depth": queue_depth,
        "source": source,
        "last_error": last_error[:500] if last_error else None,
    }
    if extra:
        body.update(extra)
    return body


def offline_payload(device_id: str) -> bytes:
    """The "offline" status: the MQTT last will and the goodbye a transport sends on a clean stop."""
    return json.dumps({"v": STATUS_VERSION, "device_id": device_id, "state": "offline"}, separators=(",", ":")).encode()


def encode_status(status: dict[str, Any]) -> bytes:
    """Compact JSON of at most :data:`MAX_STATUS_BYTES`; :class:`Rejected` ``not_json`` or ``oversize``."""
    try:
        payload = json.dumps(status, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise Rejected("not_json", f"status cannot be written as JSON: {str(exc)[:120]}") from None
    if len(payload) > MAX_STATUS_BYTES:
        raise Rejected("oversize", f"status message is {len(payload)} bytes, over the {MAX_STATUS_BYTES}-byte limit")
    return payload


def parse_status(payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Validate loosely (the cloud must not break on a newer device's extra fields): a JSON object of at most
    :data:`MAX_STATUS_BYTES` (raw bytes, or the compact JSON of an already-parsed object such as an IoT rule
    event) with ``v`` 1, a ``device_id`` string and a known ``state``."""
    if isinstance(payload, dict):
        body: Any = bounded_json.check(payload, what="status")
        encode_status(body)  # the size rule, on the form the message has on the wire
    else:
        body = bounded_json.loads(payload, max_bytes=MAX_STATUS_BYTES, what="status")
    if not isinstance(body, dict):
        raise Rejected("not_object", f"status payload must be a JSON object, got {type(body).__name__}")
    version = body.get("v")
    if isinstance(version, bool) or version != STATUS_VERSION:
        raise Rejected(
            "unknown_version", f"status version {str(version)[:20]!r} is not supported (expected {STATUS_VERSION})"
        )
    if not is_thing_name(body.get("device_id")):
        raise Rejected("bad_device_id", f"status 'device_id' must be {THING_NAME_RULE}")
    if body.get("state") not in STATES:
        raise Rejected(
            "bad_state", f"status 'state' must be one of {', '.join(STATES)}, got {str(body.get('state'))[:20]!r}"
        )
    return body
