"""API Lambda entry point: an API Gateway HTTP API (payload 2.0) event → the ASGI app, through Mangum.

``cloud_lambda.api.handler.lambda_handler`` is the function the template names. Before Mangum sees an
event it is checked field by field (a malformed one is a 400 JSON error, never an exception out of the
Lambda) and the upload limit is applied to the event's own body length, so an oversized base64 body is
never decoded: it reaches the app as an empty body whose ``content-length`` states its real size.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from mangum import Mangum

from cloud_lambda.api.app import create_app
from cloud_lambda.api.responses import common_headers, to_json
from cloud_lambda.search.container import ContainerService
from model.contracts.errors import VisualSearchError

_container = ContainerService()
get_service = _container.get
set_service = _container.set
"""Use a service for the following requests (the local server and tests build their own)."""
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
"""The upload limit used while the service (and its ``VS_MAX_UPLOAD_BYTES``) cannot be loaded."""


class BadEvent(VisualSearchError, ValueError):
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


def _body(event: dict[str, Any], limit: int) -> tuple[str, bool, int]:
    """(body as Mangum takes it, is base64, decoded length); an oversized body is replaced by ""."""
    raw = event.get("body")
    if raw is None:
        raw = ""
    elif not isinstance(raw, str):
        raise BadEvent(f"event field 'body' must be a string, got {type(raw).__name__}")
    is_base64 = event.get("isBase64Encoded") is True
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a JSON \ud800 escape
        raise BadEvent("event field 'body' is not valid Unicode text") from exc
    length = base64_length(raw) if is_base64 else len(raw.encode("utf-8"))
    if length > limit:
        return "", False, length
    if is_base64:
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return "", False, 0  # undecodable: an empty upload, answered as such by the route
    return raw, is_base64, length


def normalize_event(event: dict[str, Any], max_body: int = MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """A well-formed HTTP API v2 event with the same request; raises :class:`BadEvent` for any wrong part."""
    context = _mapping(event, "requestContext")
    http = _mapping(context, "http")
    headers = {_text(k, "headers").lower(): _text(v, "headers") for k, v in _mapping(event, "headers").items()}
    query = {
        _text(k, "queryStringParameters"): _text(v, "queryStringParameters")
        for k, v in _mapping(event, "queryStringParameters").items()
    }
    raw_query = event.get("rawQueryString")
    raw_query = _text(raw_query, "rawQueryString") if raw_query else urlencode(query)
    method = _text(http.get("method") or event.get("httpMethod") or "GET", "requestContext.http.method")
    path = _text(event.get("rawPath") or http.get("path") or "/", "rawPath")
    body, is_base64, length = _body(event, max_body)
    headers["content-length"] = str(length)
    if "\x00" in path or not path.startswith("/"):
        raise BadEvent("event field 'rawPath' must be an absolute path")
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": _text(http.get("sourceIp") or "0.0.0.0", "requestContext.http.sourceIp"),
            },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _upload_limit() -> int:
    try:
        return get_service().settings.max_upload_bytes
    except Exception:  # settings/catalog problems are answered by the route itself (500, logged)
        return MAX_UPLOAD_BYTES


app = create_app(get_service)
"""The ASGI app the Lambda serves (and ``uvicorn cloud_lambda.api.handler:app`` would)."""
_adapter = Mangum(app, lifespan="off")  # type: ignore[arg-type]


def _bad_event(message: str) -> dict[str, Any]:
    body = to_json({"error": {"code": "bad_event", "message": message}})
    headers = {**common_headers("*"), "content-type": "application/json", "cache-control": "no-store"}
    return {"statusCode": 400, "headers": headers, "body": body, "isBase64Encoded": False}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        return _bad_event("not an API Gateway HTTP API event")
    try:
        normalized = normalize_event(event, _upload_limit())
    except BadEvent as exc:
        return _bad_event(str(exc))
    return _adapter(normalized, context)  # type: ignore[no-any-return]
