"""The local stand-in for API Gateway + the API Lambda, and the static host of the web app.

Every ``/api/...`` request becomes an API Gateway HTTP API payload v2 event for the same
``cloud_lambda.api.handler.lambda_handler`` that runs in AWS; its response dict becomes the HTTP
response. Everything else is a static file of ``cloud_lambda/webapp/`` or, under ``/catalog/``, a
catalog image, so the web app can show what matched.

``python -m simulator.stack.http_server --port 8080 [--catalog-dir DIR]`` (settings: ``VS_*`` environment).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import logging
import mimetypes
import signal
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("simulator.stack.http")

WEBAPP_DIR = Path(__file__).resolve().parent.parent.parent / "cloud_lambda" / "webapp"
DEFAULT_HANDLER = "cloud_lambda.api.handler:lambda_handler"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway's own request limit; the handler enforces the product's smaller upload limit (413)."""

CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/x-www-form-urlencoded")

LambdaHandler = Callable[[dict[str, Any], Any], Any]


class LambdaContext:
    """The attributes of the Lambda context object that handlers commonly read."""

    def __init__(self, function_name: str = "visualsearch-api-local", timeout_s: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: str) -> LambdaHandler:
    module_name, _, attr = spec.partition(":")
    handler = getattr(importlib.import_module(module_name), attr or "lambda_handler")
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


def build_event(
    method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str, host: str
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as the ``$default`` route delivers it."""
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    lower = {k.lower(): v for k, v in headers.items()}
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        # API Gateway joins repeated parameters with commas.
        query[key] = f"{query[key]},{value}" if key in query else value
    content_type = lower.get("content-type", "")
    is_text = content_type.startswith(TEXT_TYPES)
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
        "headers": lower,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lower.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if "cookie" in lower:
        event["cookies"] = [c.strip() for c in lower["cookie"].split(";") if c.strip()]
    if body:
        if is_text:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                is_text = False
        if not is_text:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def lambda_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """A handler's return value → (status, headers, body), with HTTP API's format inference."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # HTTP API: a return value without statusCode is a 200 JSON body.
        return 200, {"content-type": "application/json"}, json.dumps(result).encode("utf-8")
    status = int(result["statusCode"])
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode("utf-8")
    headers.setdefault("content-type", "application/json")
    return status, headers, body


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


def make_request_handler(
    handler: LambdaHandler, webapp_dir: Path, catalog_dir: Path | None
) -> type[BaseHTTPRequestHandler]:
    webapp_root = webapp_dir.resolve()
    catalog_root = catalog_dir.resolve() if catalog_dir else None

    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "visualsearch-local/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format % args)

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            headers = dict(headers)
            headers["content-length"] = str(len(body))
            headers.setdefault("x-content-type-options", "nosniff")
            headers.setdefault("cache-control", "no-store")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _dispatch(self) -> None:
            started = time.perf_counter()
            path = urlsplit(self.path).path
            try:
                if path.startswith("/api/") or path == "/api":
                    status = self._api()
                elif self.command not in ("GET", "HEAD"):
                    status = HTTPStatus.METHOD_NOT_ALLOWED
                    self._send(status, {"content-type": "application/json"}, _error_body("method_not_allowed", path))
                elif path.startswith("/catalog/") and catalog_root is not None:
                    status = self._file(catalog_root, path[len("/catalog/") :])
                else:
                    status = self._file(webapp_root, "index.html" if path in ("", "/") else path.lstrip("/"))
            except (BrokenPipeError, ConnectionResetError):
                return
            log.info(
                "request",
                extra={
                    "method": self.command,
                    "path": path,
                    "status": int(status),
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

        def _api(self) -> int:
            raw_length = (self.headers.get("content-length") or "0").strip()
            # Only plain digits: int() would also take "-1" (read to EOF, unbounded) or " +5".
            if not raw_length.isdigit():
                self.close_connection = True
                body = _error_body("bad_request", "Content-Length must be a non-negative integer")
                self._send(400, {"content-type": "application/json"}, body)
                return 400
            length = int(raw_length)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                body = _error_body("payload_too_large", f"request body over {MAX_BODY_BYTES} bytes")
                self._send(413, {"content-type": "application/json"}, body)
                return 413
            body = self.rfile.read(length) if length else b""
            event = build_event(
                self.command,
                self.path,
                dict(self.headers.items()),
                body,
                self.client_address[0],
                self.headers.get("host", "localhost"),
            )
            try:
                status, headers, payload = lambda_response(handler(event, LambdaContext()))
            except Exception as exc:  # what API Gateway shows when a Lambda raises
                log.exception("API handler raised", extra={"path": event["rawPath"]})
                status, headers, payload = 500, {"content-type": "application/json"}, _error_body("internal", str(exc))
            self._send(status, headers, payload)
            return status

        def _file(self, root: Path, relative: str) -> int:
            target = (root / unquote(relative)).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                self._send(404, {"content-type": "application/json"}, _error_body("not_found", f"no file {relative}"))
                return 404
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            headers = {"content-type": content_type}
            if content_type == "text/html":
                headers["content-type"] = "text/html; charset=utf-8"
                headers["content-security-policy"] = CSP
                headers["referrer-policy"] = "no-referrer"
            self._send(200, headers, target.read_bytes())
            return 200

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    return RequestHandler


def make_server(
    host: str,
    port: int,
    handler: LambdaHandler,
    webapp_dir: Path = WEBAPP_DIR,
    catalog_dir: Path | None = None,
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_request_handler(handler, webapp_dir, catalog_dir))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    from model.logs import setup_logging as setup_json_logging

    parser = argparse.ArgumentParser(prog="python -m simulator.stack.http_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--webapp-dir", type=Path, default=WEBAPP_DIR)
    parser.add_argument("--catalog-dir", type=Path, help="served under /catalog/ (catalog images)")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function of the API Lambda handler")
    args = parser.parse_args(argv)
    setup_json_logging()
    server = make_server(args.host, args.port, load_handler(args.handler), args.webapp_dir, args.catalog_dir)
    # serve_forever() blocks; SIGTERM (stack down) shuts it down from another thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("http server ready", extra={"url": f"http://{args.host}:{args.port}/"})
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
