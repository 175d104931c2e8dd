"""How every API answer looks: JSON that no browser can sniff as HTML, one error shape, one set of headers.

Every error is ``{"error": {"code", "message"}}`` with a 4xx/5xx status; an empty match list is a 200.
The same headers go on every response whichever way it is served (uvicorn locally, Lambda via Mangum).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from model.contracts.errors import VisualSearchError

CSP = (
    "default-src 'self'; img-src 'self' https: data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
"""For the pages this app serves. ``img-src https:``: in AWS catalog pictures come from S3/CloudFront."""

# "<", ">" and "&" as JSON escapes: the same JSON, but no byte sequence a browser could sniff as HTML/script.
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
_UNENCODABLE = '{"error":{"code":"internal","message":"the response could not be encoded as JSON"}}'


def to_json(body: Any) -> str:
    """Compact, HTML-safe JSON. Never raises: a value JSON cannot carry (NaN, a cycle, nesting deeper than
    the interpreter's recursion limit) turns into the ``internal`` error document instead."""
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).translate(_HTML_SAFE)
    except (ValueError, TypeError, RecursionError):
        return _UNENCODABLE


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_json(content).encode("utf-8")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class HttpError(VisualSearchError):
    """Raised by a route; answered with :func:`error`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def common_headers(origin: str) -> dict[str, str]:
    """On every response: CORS (the web app may be served from S3, the API from API Gateway) and hardening."""
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
    }


def page_headers() -> dict[str, str]:
    """On HTML pages as well."""
    return {"content-security-policy": CSP}
