"""A stand-in for the Lambda service around one function container: the Runtime API and asynchronous invokes.

The container under test is the real thing — the image's ENTRYPOINT script running ``python -m awslambdaric``
(its native client polls this server) with the handler name from the template's ``ImageConfig.Command``.
This module plays Lambda's side, as documented:

- Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): ``GET
  /2018-06-01/runtime/invocation/next`` blocks until there is an event and answers it with the
  ``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn`` and ``-Trace-Id`` headers;
  ``POST .../invocation/{id}/response`` (202; 413 above the 6 MB synchronous response limit) and
  ``.../invocation/{id}/error`` (202, error type in ``Lambda-Runtime-Function-Error-Type``);
  ``POST /2018-06-01/runtime/init/error`` when the handler cannot be loaded. An unknown request id is a 400.
- Asynchronous invocation, as an IoT rule invokes the search function
  (https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html): a function error is
  retried ``MaximumRetryAttempts`` times (the template's value, default 2); when every attempt failed, the
  failed-invocation record (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)
  goes to the OnFailure destination. Lambda waits about 1 and 2 minutes between attempts; this stand-in does
  not wait.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
MAX_SYNC_RESPONSE_BYTES = 6 * 1024 * 1024
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:visual-search-search"


@dataclass
class Invocation:
    request_id: str
    event: bytes
    done: threading.Event = field(default_factory=threading.Event)
    response: Any = None
    error: dict[str, Any] | None = None
    error_type: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def ms(self) -> float:
        return (self.finished - self.started) * 1000.0


class RuntimeApi:
    """One function container's Runtime API on a free loopback port (``address`` = AWS_LAMBDA_RUNTIME_API)."""

    def __init__(self, timeout_s: float = 15.0) -> None:
        self.timeout_s = timeout_s
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._by_id: dict[str, Invocation] = {}
        self.init_error: dict[str, Any] | None = None
        self.first_poll_at: float | None = None
        self.rejected: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                api._next(self)

            def do_POST(self) -> None:
                api._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    # --- what the service does ------------------------------------------------------------------------
    def invoke(self, event: Any, timeout_s: float = 120.0) -> Invocation:
        """One synchronous invoke: the event to the function, its response or error back."""
        invocation = Invocation(str(uuid.uuid4()), json.dumps(event).encode("utf-8"))
        self._by_id[invocation.request_id] = invocation
        invocation.started = time.perf_counter()
        self._pending.put(invocation)
        if not invocation.done.wait(timeout_s):
            raise TimeoutError(f"no response within {timeout_s} s (init error: {self.init_error})")
        return invocation

    def invoke_async(
        self, event: Any, max_retry_attempts: int, on_failure: Callable[[dict[str, Any]], None]
    ) -> list[Invocation]:
        """An asynchronous invoke: retried on a function error, then the failure record to ``on_failure``."""
        attempts = [self.invoke(event)]
        while attempts[-1].error is not None and len(attempts) <= max_retry_attempts:
            attempts.append(self.invoke(event))
        last = attempts[-1]
        if last.error is not None:
            on_failure(
                {
                    "version": "1.0",
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "requestContext": {
                        "requestId": attempts[0].request_id,
                        "functionArn": f"{FUNCTION_ARN}:$LATEST",
                        "condition": "RetriesExhausted",
                        "approximateInvokeCount": len(attempts),
                    },
                    "requestPayload": event,
                    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                    "responsePayload": last.error,
                }
            )
        return attempts

    def close(self) -> None:
        self._pending.put(None)
        self._server.shutdown()
        self._server.server_close()

    # --- the Runtime API endpoints --------------------------------------------------------------------
    def _next(self, request: BaseHTTPRequestHandler) -> None:
        if request.path != f"{PREFIX}/invocation/next":
            request.send_error(404)
            return
        if self.first_poll_at is None:
            self.first_poll_at = time.perf_counter()
        invocation = self._pending.get()
        if invocation is None:  # shutting down: the container is gone or going; just end the poll
            self._pending.put(None)
            request.close_connection = True
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
        request.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + self.timeout_s) * 1000)))
        request.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
        request.send_header("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
        request.send_header("Content-Length", str(len(invocation.event)))
        request.end_headers()
        request.wfile.write(invocation.event)

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        parts = request.path.removeprefix(PREFIX).strip("/").split("/")
        if parts == ["init", "error"]:
            self.init_error = json.loads(body or b"{}")
            request.send_response(202)
            request.end_headers()
            return
        if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
            request.send_error(404)
            return
        invocation = self._by_id.get(parts[1])
        if invocation is None or invocation.done.is_set():
            self.rejected.append(request.path)
            request.send_error(400, "unknown or already answered request id")
            return
        if parts[2] == "response" and len(body) > MAX_SYNC_RESPONSE_BYTES:
            request.send_error(413, "response payload over 6 MB")
            return
        if parts[2] == "response":
            invocation.response = json.loads(body) if body else None
        else:
            invocation.error = json.loads(body or b"{}")
            # Optional header (awslambdaric 4.x sends the type in the body only).
            invocation.error_type = request.headers.get("Lambda-Runtime-Function-Error-Type")
        invocation.finished = time.perf_counter()
        request.send_response(202)
        request.end_headers()
        invocation.done.set()
