"""Routes of the HTTP API, independent of how the request arrived (API Gateway or the local server).

Every error is ``{"error": {"code", "message"}}`` with a 4xx/5xx status; an empty match list is a 200.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_lambda.catalog.validate import ImageRejected
from cloud_lambda.logs import get_logger, log_event
from cloud_lambda.matches import MatchStoreUnavailable
from cloud_lambda.search.service import PhotoModelUnavailable, SearchService
from edge_component.wire.codec import DEVICE_ID_RE

WEBAPP_DIR = Path(__file__).resolve().parent.parent / "webapp"
STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
CSP = (
    "default-src 'self'; img-src 'self' https: data:; script-src 'self'; style-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
IMAGE_TYPES = ("image/jpeg", "image/png")
MATCHES_RE = re.compile(r"^/api/devices/([^/]+)/matches(/latest)?$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Set instead of ``body`` when the event's body was already over the upload limit: never decoded.
    oversized_length: int | None = None

    @property
    def body_length(self) -> int:
        return len(self.body) if self.oversized_length is None else self.oversized_length


@dataclass
class Response:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,6}", raw) or not low <= int(raw) <= high:
        raise HttpError(400, "bad_parameter", f"'{name}' must be an integer in {low}..{high}, got {raw[:20]!r}")
    return int(raw)


def _device(raw: str) -> str:
    if not DEVICE_ID_RE.match(raw):
        raise HttpError(400, "bad_device_id", f"device id {raw[:80]!r} is not a valid thing name")
    return raw


def handle(request: Request, service: Callable[[], SearchService]) -> Response:
    log = get_logger()
    try:
        return _route(request, service)
    except HttpError as exc:
        return error(exc.status, exc.code, str(exc))
    except MatchStoreUnavailable as exc:
        log_event(log, "api_unavailable", logging.ERROR, path=request.path, error=str(exc))
        return error(503, "unavailable", "the match store is unreachable; try again shortly")
    except Exception as exc:
        log_event(log, "api_error", logging.ERROR, path=request.path, error=f"{type(exc).__name__}: {exc}")
        return error(500, "internal", "internal error (logged)")


def _route(request: Request, service: Callable[[], SearchService]) -> Response:
    method, path = request.method.upper(), request.path
    if method == "OPTIONS":
        return Response(204, "")
    if path in STATIC:
        if method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed", f"{method} {path}")
        return _static(STATIC[path])
    if path == "/api/health":
        _method(method, "GET", path)
        svc = service()
        try:
            svc.matches.client.ping()
            redis_state = "ok"
        except Exception:
            redis_state = "down"
        body = {
            "status": "ok" if redis_state == "ok" else "degraded",
            "model_id": svc.catalog.model_id,
            "items": len(svc.catalog.ids),
            "index": svc.catalog.manifest.index.kind,
            "redis": redis_state,
        }
        return Response(200 if redis_state == "ok" else 503, body)
    if path == "/api/devices":
        _method(method, "GET", path)
        return Response(200, {"devices": service().matches.devices()})
    found = MATCHES_RE.match(path)
    if found:
        _method(method, "GET", path)
        device_id = _device(found.group(1))
        svc = service()
        if found.group(2):
            records = svc.matches.latest(device_id, 1)
            return Response(200, {"device_id": device_id, "record": records[0] if records else None})
        n = _int_param(request.query, "n", 10, 1, svc.settings.match_list_cap)
        return Response(200, {"device_id": device_id, "records": svc.matches.latest(device_id, n)})
    if path == "/api/search":
        _method(method, "POST", path)
        return _photo_search(request, service)
    raise HttpError(404, "not_found", f"no route for {path[:200]}")


def _method(method: str, allowed: str, path: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}; use {allowed}")


def _photo_search(request: Request, service: Callable[[], SearchService]) -> Response:
    svc = service()
    k = _int_param(request.query, "k", svc.settings.top_k, 1, 50)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise HttpError(
            415, "unsupported_media_type", f"Content-Type must be image/jpeg or image/png, got {content_type!r}"
        )
    if request.body_length > svc.settings.max_upload_bytes:
        raise HttpError(
            413, "too_large", f"upload is {request.body_length:,} bytes; the limit is {svc.settings.max_upload_bytes:,}"
        )
    if not request.body:
        raise HttpError(400, "empty", "the request body must be the image bytes")
    try:
        result = svc.search_photo(request.body, k)
    except ImageRejected as exc:
        status = 415 if exc.reason in ("unsupported_format", "not_image") else 413 if exc.reason == "too_large" else 400
        raise HttpError(status, exc.reason, str(exc)) from exc
    except PhotoModelUnavailable as exc:
        raise HttpError(503, "photo_search_unavailable", str(exc)) from exc
    return Response(200, result)


def _static(name: str) -> Response:
    path = WEBAPP_DIR / name
    if not path.is_file():
        raise HttpError(404, "not_found", f"{name} is not deployed")
    headers = {"content-type": CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
    if path.suffix == ".html":
        headers["content-security-policy"] = CSP
    return Response(200, path.read_text(encoding="utf-8"), headers)


# "<", ">" and "&" as JSON escapes: the same JSON, but no byte sequence a browser could sniff as HTML/script.
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def to_json(body: dict[str, Any] | str) -> str:
    if isinstance(body, str):
        return body
    return json.dumps(body, separators=(",", ":"), allow_nan=False).translate(_HTML_SAFE)
