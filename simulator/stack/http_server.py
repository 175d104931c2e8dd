"""The local API server: uvicorn serving the one ASGI app (API + web app + catalog pictures).

In AWS the same app runs in the API Lambda behind API Gateway (Mangum); here uvicorn parses the requests,
enforces HTTP/1.1 (a body is never read as a second request; a bad ``Content-Length`` or a NUL byte in
the request line is a 400), keeps a 2048-connection backlog and closes idle keep-alive connections.

One thing uvicorn leaves to a proxy is a client that never finishes its request head (slowloris):
:class:`HeadTimeoutH11Protocol` closes such a connection after ``--request-timeout`` seconds, and the
upload route answers 408 when a body stalls for as long.

``python -m simulator.stack.http_server --port 8080 [--catalog-dir DIR]`` (settings: ``VS_*`` environment).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cloud_lambda.api.app import REQUEST_TIMEOUT_S, create_app
from cloud_lambda.api.handler import get_service
from cloud_lambda.api.static import WEBAPP_DIR

MAX_CONNECTIONS = 256
"""Concurrent connections before uvicorn answers 503 (each upload may hold up to 4 MB)."""
MAX_HEAD_BYTES = 64 * 1024


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for the request head (request line and headers).

    Armed when a connection opens and whenever a response is complete (a keep-alive connection waiting
    for its next request); disarmed as soon as a request has started. uvicorn's own keep-alive timer only
    covers a connection that sends nothing after a response, not one that trickles a header.
    """

    head_timeout_s: float = REQUEST_TIMEOUT_S

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request is being handled: its body has the route's own timeout

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._expire)

    def _disarm(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._head_deadline = None

    def _expire(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return
        if not self.transport.is_closing():
            self.transport.close()


def make_config(
    host: str,
    port: int,
    *,
    catalog_dir: Path | None = None,
    webapp_dir: Path = WEBAPP_DIR,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    app: Any = None,
) -> uvicorn.Config:
    protocol = type("Protocol", (HeadTimeoutH11Protocol,), {"head_timeout_s": request_timeout_s})
    application = app or create_app(
        get_service, webapp_dir=webapp_dir, catalog_dir=catalog_dir, request_timeout_s=request_timeout_s
    )
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        http=protocol,
        lifespan="off",
        access_log=False,  # the app writes one JSON line per request
        log_config=None,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def main(argv: list[str] | None = None) -> int:
    from model.logs import setup_logging as setup_json_logging

    parser = argparse.ArgumentParser(prog="python -m simulator.stack.http_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--webapp-dir", type=Path, default=WEBAPP_DIR)
    parser.add_argument("--catalog-dir", type=Path, help="served under /catalog/ (catalog images)")
    parser.add_argument(
        "--request-timeout",
        type=functools.partial(_positive, "--request-timeout"),
        default=REQUEST_TIMEOUT_S,
        help="seconds a client may take to send its request head, or stall mid-body",
    )
    args = parser.parse_args(argv)
    setup_json_logging()
    config = make_config(
        args.host,
        args.port,
        catalog_dir=args.catalog_dir,
        webapp_dir=args.webapp_dir,
        request_timeout_s=args.request_timeout,
    )
    # uvicorn handles SIGTERM (stack down) and SIGINT: it stops accepting, finishes requests, exits.
    uvicorn.Server(config).run()
    return 0


def _positive(name: str, text: str) -> float:
    value = float(text)
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{name} must be a number of seconds in (0, 3600), got {text!r}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
