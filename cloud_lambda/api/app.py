"""The one ASGI app (Starlette) behind the HTTP API, the web app and the catalog pictures.

Served by uvicorn on a laptop (``visual-search stack up``, :mod:`simulator.stack.http_server`) and by
Lambda through Mangum in AWS (:mod:`cloud_lambda.api.handler`): request parsing, limits and timeouts are
the server's; this module adds the routes, the error shape and the headers every response carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_lambda.api import routes, static
from cloud_lambda.api.responses import common_headers, error, page_headers
from cloud_lambda.logs import get_logger
from cloud_lambda.search.service import SearchService
from model.logs import log_event

REQUEST_TIMEOUT_S = 10.0
"""How long an upload may stall between two pieces of its body (408 after that)."""

ServiceFactory = Callable[[], SearchService]


class Origin:
    """``Access-Control-Allow-Origin`` from the settings (``VS_CORS_ORIGIN``), read once they load."""

    def __init__(self, service: ServiceFactory) -> None:
        self._service = service
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            try:
                self._value = self._service().settings.cors_origin
            except Exception:  # settings/catalog problems are the routes' to answer; CORS stays open
                return "*"
        return self._value


class HeadersAndLog:
    """Pure ASGI middleware: answers CORS preflights, puts the common headers on every response (the CSP on
    pages), and writes one JSON log line per request."""

    def __init__(self, app: ASGIApp, origin: Origin) -> None:
        self.app = app
        self.origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        origin = await run_in_threadpool(self.origin)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                for key, value in common_headers(origin).items():
                    headers.setdefault(key, value)
                if headers.get("content-type", "").startswith("text/html"):
                    for key, value in page_headers().items():
                        headers.setdefault(key, value)
                headers.setdefault("cache-control", "no-store" if scope["path"].startswith("/api") else "no-cache")
            await send(message)

        if scope["method"] == "OPTIONS":
            await Response(status_code=204, media_type="application/json")(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)
        log_event(
            get_logger(__name__),
            "api_request",
            method=str(scope["method"])[:16],
            path=str(scope["path"])[:200],
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )


async def _http_exception(request: Request, exc: Exception) -> Response:
    """The router's own answers (405 for a method a route does not take) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    path = request.scope["path"][:200]
    if not any(route.path_regex.match(request.scope["path"]) for route in routes.ROUTES) and static.is_api(path):
        return static.api_not_found(request)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method[:16]} is not allowed on {path}; use {allowed}"
        return error(405, "method_not_allowed", message, headers={"allow": allowed})
    return error(exc.status_code, "not_found" if exc.status_code == 404 else "bad_request", f"{exc.detail}: {path}")


def create_app(
    service: ServiceFactory,
    *,
    webapp_dir: Path = static.WEBAPP_DIR,
    catalog_dir: Path | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> ASGIApp:
    """The app; ``service`` is called (from a worker thread) whenever a route needs the search service."""
    app = Starlette(
        routes=[
            *routes.ROUTES,
            *static.ROUTES,
        ],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.service = service
    app.state.webapp_dir = webapp_dir.resolve()
    app.state.catalog_dir = catalog_dir.resolve() if catalog_dir is not None else None
    app.state.request_timeout_s = request_timeout_s
    wrapped: Any = HeadersAndLog(app, Origin(service))
    return wrapped  # type: ignore[no-any-return]
