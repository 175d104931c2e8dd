"""The local API server (uvicorn + the ASGI app) answers exactly as the API Lambda (Mangum) does.

Every request below is sent twice: over HTTP to uvicorn, and as an API Gateway HTTP API v2 event to
``cloud_lambda.api.handler.lambda_handler``. Same status, same JSON, same security headers: the stand-in is
the product's own app, not a copy of it.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
import uvicorn

from cloud_lambda.api import handler as api
from cloud_lambda.api.app import create_app
from cloud_lambda.api.responses import CSP
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.http_server import make_config
from simulator.stack.processes import RedisProcess, free_port
from tests.simulator.conftest import TinyCatalog
from tests.wait import wait_for


@pytest.fixture
def service(tiny_catalog: TinyCatalog, redis_server: RedisProcess) -> Iterator[SearchService]:
    settings = CloudSettings.build(
        index_dir=str(tiny_catalog.index_dir), redis_url=redis_server.url, photo_model=str(tiny_catalog.model)
    )
    svc = SearchService(settings)
    api.set_service(svc)
    yield svc
    api.set_service(None)
    svc.metadata.close()


def serve(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(make_config("127.0.0.1", port, app=app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
    assert server.started, "uvicorn stopped before it started"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def base(service: SearchService, tiny_catalog: TinyCatalog, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "secret.txt").write_text("outside the catalog")
    yield from serve(create_app(lambda: service, catalog_dir=tiny_catalog.images_dir))


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def lambda_call(
    method: str, path: str, query: str = "", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "abc.execute-api.eu-west-1.amazonaws.com", **(headers or {})},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"}},
        "isBase64Encoded": data is not None,
    }
    if data is not None:
        event["body"] = base64.b64encode(data).decode()
    response = api.lambda_handler(event, None)
    body = response.get("body", "")
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return response["statusCode"], response["headers"], raw


SECURITY_HEADERS = ("x-content-type-options", "access-control-allow-origin", "referrer-policy", "cache-control")


def test_local_server_and_lambda_give_the_same_answers(
    base: str, service: SearchService, tiny_catalog: TinyCatalog
) -> None:
    vector = tiny_catalog.vectors["item-a"]
    payload = json.loads(encode(FeatureMessage("cam-1", 1, time.time(), tiny_catalog.model_id, vector)))
    assert service.handle_feature_event({**payload, "topic_device": "cam-1"})["status"] == "accepted"
    _, png = cv2.imencode(".png", tiny_catalog.images["item-c"])
    requests: list[tuple[str, str, str, bytes | None, dict[str, str]]] = [
        ("GET", "/api/health", "", None, {}),
        ("GET", "/api/devices", "", None, {}),
        ("GET", "/api/latest", "limit=5", None, {}),
        ("GET", "/api/devices/cam-1/matches", "n=2", None, {}),
        ("GET", "/api/devices/cam-1/matches/latest", "", None, {}),
        ("GET", "/api/devices/..%2F/matches", "", None, {}),
        ("GET", "/api/devices/cam-1/matches", "n=abc", None, {}),
        ("DELETE", "/api/devices", "", None, {}),
        ("GET", "/api/search", "", None, {}),
        ("POST", "/api/nothing", "", b"{}", {"content-type": "application/json"}),
        ("POST", "/api/search", "k=2", png.tobytes(), {"content-type": "image/png"}),
        ("POST", "/api/search", "", b"GIF89a", {"content-type": "image/gif"}),
        ("POST", "/api/search", "", b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024), {"content-type": "image/png"}),
    ]
    for method, path, query, data, headers in requests:
        url = f"{base}{path}" + (f"?{query}" if query else "")
        local = fetch(url, data, headers, method)
        remote = lambda_call(method, path.replace("%2F", "/"), query, data, headers)
        assert local[0] == remote[0], (method, path, local, remote)
        local_body, remote_body = json.loads(local[2]), json.loads(remote[2])
        if path == "/api/search" and local[0] == 200:  # timings differ, results do not
            local_body.pop("timing_ms"), remote_body.pop("timing_ms")
        assert local_body == remote_body, (method, path)
        for key in SECURITY_HEADERS:
            assert local[1][key] == remote[1][key], key
        assert local[1]["content-type"] == remote[1]["content-type"] == "application/json"


def test_pages_catalog_pictures_and_what_is_not_served(base: str) -> None:
    status, headers, body = fetch(f"{base}/")
    assert status == 200 and headers["content-security-policy"] == CSP and b"app.js" in body
    assert headers["content-type"].startswith("text/html")
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    status, headers, _ = fetch(f"{base}/app.js")
    assert status == 200 and "javascript" in headers["content-type"]
    status, headers, body = fetch(f"{base}/catalog/item-a.png")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    for path in ("/catalog/..%2Fsecret.txt", "/catalog/../secret.txt", "/nope.html", "/__init__.py", "/catalog/"):
        status, headers, body = fetch(f"{base}{path}")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", path


def test_a_handler_crash_is_a_500_json_error(tiny_catalog: TinyCatalog) -> None:
    def broken() -> SearchService:
        raise RuntimeError("catalog could not load")

    for url in serve(create_app(broken)):
        status, headers, body = fetch(f"{url}/api/devices")
        assert status == 500 and json.loads(body)["error"]["code"] == "internal"
        assert headers["x-content-type-options"] == "nosniff"
        status, _, body = fetch(f"{url}/api/search", b"\x89PNG", {"content-type": "image/png"}, "POST")
        assert status == 500 and json.loads(body)["error"]["code"] == "internal"


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1e3"])
def test_bad_content_length_is_refused_without_reading_the_body(base: str, length: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        # We never close our side: a server that read the body to EOF would time out here instead of answering.
        response = b""
        while chunk := sock.recv(4096):  # the server closes after refusing
            response += chunk
    assert response.startswith(b"HTTP/1.1 400"), response[:80]
