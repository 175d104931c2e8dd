"""API Lambda entry point: API Gateway HTTP API (payload 2.0) event → route → proxy response."""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

from cloud_lambda.api.routes import Request, error, handle, to_json
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings

_service: SearchService | None = None
_lock = threading.Lock()
# Above the 4 MB image limit plus base64 overhead: refuse before decoding anything bigger.
MAX_EVENT_BODY = 6 * 1024 * 1024


def get_service() -> SearchService:
    global _service
    with _lock:
        if _service is None:
            _service = SearchService(CloudSettings.from_env())
        return _service


def set_service(service: SearchService | None) -> None:
    """Use ``service`` for the following requests (the local server and tests build their own)."""
    global _service
    with _lock:
        _service = service


def parse_event(event: dict[str, Any]) -> Request:
    http = (event.get("requestContext") or {}).get("http") or {}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    raw = event.get("body") or ""
    if len(raw) > MAX_EVENT_BODY:
        body = b"\0" * (len(raw) * 3 // 4)  # size only matters: the route answers 413
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            body = b""
    else:
        body = raw.encode("utf-8")
    return Request(
        method=str(http.get("method") or event.get("httpMethod") or "GET"),
        path=str(event.get("rawPath") or http.get("path") or "/"),
        query={str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()},
        headers=headers,
        body=body,
    )


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    origin = "*"
    if not isinstance(event, dict):
        response = error(400, "bad_event", "not an API Gateway HTTP API event")
    else:
        request = parse_event(event)
        response = handle(request, get_service)
        try:
            origin = get_service().settings.cors_origin
        except Exception:
            origin = "*"
    headers = {
        "content-type": "application/json",
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
        "x-content-type-options": "nosniff",
        **response.headers,
    }
    return {"statusCode": response.status, "headers": headers, "body": to_json(response.body), "isBase64Encoded": False}
