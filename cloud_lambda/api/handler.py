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
# Bodies over the upload limit are measured, never decoded (the service's own limit when it has one).
MAX_UPLOAD_BYTES = 4 * 1024 * 1024


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


class BadEvent(ValueError):
    """An event that is not an API Gateway HTTP API (payload 2.0) event; answered with a 400."""


def _mapping(event: dict[str, Any], key: str) -> dict[Any, Any]:
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadEvent(f"event field '{key}' must be an object, got {type(value).__name__}")
    return value


def _text(value: Any, name: str) -> str:
    # Scalars only: str() of a nested list/dict would turn a malformed event into a plausible-looking value.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadEvent(f"event field '{name}' must be a string, got {type(value).__name__}")


def base64_length(text: str) -> int:
    """Bytes that base64 ``text`` decodes to (for well-formed input), from its length alone."""
    return len(text) * 3 // 4 - text[-2:].count("=")


def parse_event(event: dict[str, Any], max_body: int = MAX_UPLOAD_BYTES) -> Request:
    """The request an event describes; raises :class:`BadEvent` for any part of the wrong shape."""
    http = _mapping(_mapping(event, "requestContext"), "http")
    headers = {_text(k, "headers").lower(): _text(v, "headers") for k, v in _mapping(event, "headers").items()}
    query = {
        _text(k, "queryStringParameters"): _text(v, "queryStringParameters")
        for k, v in _mapping(event, "queryStringParameters").items()
    }
    raw = event.get("body")
    if raw is None:
        raw = ""
    elif not isinstance(raw, str):
        raise BadEvent(f"event field 'body' must be a string, got {type(raw).__name__}")
    body, oversized = b"", None
    base64_body = event.get("isBase64Encoded") is True
    # The upload limit is checked on the event's own body length, before any decoding or copy.
    length = base64_length(raw) if base64_body else len(raw)
    if length > max_body:
        oversized = length
    elif base64_body:
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            body = b""
    else:
        try:
            body = raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates from a JSON \ud800 escape
            raise BadEvent("event field 'body' is not valid Unicode text") from exc
    method = http.get("method") or event.get("httpMethod") or "GET"
    path = event.get("rawPath") or http.get("path") or "/"
    return Request(
        method=_text(method, "requestContext.http.method"),
        path=_text(path, "rawPath"),
        query=query,
        headers=headers,
        body=body,
        oversized_length=oversized,
    )


def _upload_limit() -> int:
    try:
        return get_service().settings.max_upload_bytes
    except Exception:  # settings/catalog problems are answered by the route itself (500, logged)
        return MAX_UPLOAD_BYTES


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    origin = "*"
    if not isinstance(event, dict):
        response = error(400, "bad_event", "not an API Gateway HTTP API event")
    else:
        try:
            request = parse_event(event, _upload_limit())
        except BadEvent as exc:
            response = error(400, "bad_event", str(exc))
        else:
            response = handle(request, get_service)
        try:
            origin = get_service().settings.cors_origin
        except Exception:
            origin = "*"
    try:
        body = to_json(response.body)
    except ValueError:  # a NaN/inf that slipped into a result: JSON cannot carry it
        response = error(500, "internal", "the response could not be encoded as JSON")
        body = to_json(response.body)
    headers = {
        "content-type": "application/json",
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
        "x-content-type-options": "nosniff",
        **response.headers,
    }
    return {"statusCode": response.status, "headers": headers, "body": body, "isBase64Encoded": False}
