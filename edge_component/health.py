"""The status message on ``visualsearch/{device_id}/status``: built here, parsed here (cloud side too).

Sent every ``status_interval_s`` and whenever the state changes; the MQTT last will carries the
``offline`` form. The fields answer what operators ask first: is it running, on which accelerator, how
fast, is anything being lost.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

MAX_STATUS_BYTES = 16 * 1024
STATES = ("online", "degraded", "offline")
State = Literal["online", "degraded", "offline"]


class StatusError(ValueError):
    """A status payload that is not a usable status message."""


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
        "v": 1,
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


def encode_status(status: dict[str, Any]) -> bytes:
    payload = json.dumps(status, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
    if len(payload) > MAX_STATUS_BYTES:
        raise StatusError(f"status message is {len(payload)} bytes, over {MAX_STATUS_BYTES}")
    return payload


def parse_status(payload: bytes | str) -> dict[str, Any]:
    """Validate loosely (the cloud must not break on a newer device): a JSON object of at most 16 KB with
    ``v`` 1, a ``device_id`` string and a known ``state``."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if len(raw) > MAX_STATUS_BYTES:
        raise StatusError(f"status payload is {len(raw)} bytes, over the {MAX_STATUS_BYTES}-byte limit")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StatusError(f"status payload is not UTF-8 JSON: {str(exc)[:120]}") from exc
    if not isinstance(body, dict):
        raise StatusError(f"status payload must be a JSON object, got {type(body).__name__}")
    if body.get("v") != 1:
        raise StatusError(f"status version {str(body.get('v'))[:20]!r} is not supported (expected 1)")
    if not isinstance(body.get("device_id"), str) or not body["device_id"]:
        raise StatusError("status 'device_id' must be a non-empty string")
    if body.get("state") not in STATES:
        raise StatusError(f"status 'state' must be one of {', '.join(STATES)}, got {str(body.get('state'))[:20]!r}")
    return body
