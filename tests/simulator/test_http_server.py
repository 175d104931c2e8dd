"""The local API Gateway: request → HTTP API payload v2 event → handler response, plus static files + CSP."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.stack.http_server import CSP, build_event, lambda_response, make_server


def test_event_has_the_http_api_v2_shape() -> None:
    event = build_event(
        "POST",
        "/api/search?k=3&tag=a&tag=b",
        {"Content-Type": "image/png", "User-Agent": "t"},
        b"\x89PNG\r\n",
        "127.0.0.1",
        "localhost:8080",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/api/search" and event["rawQueryString"] == "k=3&tag=a&tag=b"
    assert event["queryStringParameters"] == {"k": "3", "tag": "a,b"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"]["content-type"] == "image/png"
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG\r\n"
    text = build_event("POST", "/api/x", {"content-type": "application/json"}, b'{"a":1}', "::1", "h")
    assert text["isBase64Encoded"] is False and text["body"] == '{"a":1}'
    assert "queryStringParameters" not in text


def test_response_formats() -> None:
    assert lambda_response({"statusCode": 201, "headers": {"X-A": "1"}, "body": "hi"}) == (
        201,
        {"x-a": "1", "content-type": "application/json"},
        b"hi",
    )
    status, _, body = lambda_response(
        {"statusCode": 200, "body": base64.b64encode(b"\0").decode(), "isBase64Encoded": True}
    )
    assert (status, body) == (200, b"\0")
    assert lambda_response({"devices": []})[2] == b'{"devices": []}'  # HTTP API format inference


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        if event["rawPath"] == "/api/boom":
            raise RuntimeError("handler crashed")
        body = {"path": event["rawPath"], "remaining_ms": context.get_remaining_time_in_millis()}
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "a.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.txt").write_text("outside the catalog")
    httpd = make_server("127.0.0.1", 0, handler, catalog_dir=catalog)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_api_static_catalog_and_errors(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    status, _, body = fetch(f"{base}/api/devices/cam-1/matches?n=2")
    assert status == 200 and json.loads(body)["path"] == "/api/devices/cam-1/matches"
    assert seen[-1]["queryStringParameters"] == {"n": "2"} and json.loads(body)["remaining_ms"] > 0
    status, _, _ = fetch(f"{base}/api/search", data=b"\xff\xd8 jpeg bytes", headers={"Content-Type": "image/jpeg"})
    assert status == 200 and base64.b64decode(seen[-1]["body"]) == b"\xff\xd8 jpeg bytes"
    status, _, body = fetch(f"{base}/api/boom")
    assert status == 500 and json.loads(body)["error"]["code"] == "internal"
    status, headers, body = fetch(f"{base}/")
    assert status == 200 and headers["content-security-policy"] == CSP and b"app.js" in body
    assert "'unsafe-inline'" not in CSP
    status, headers, _ = fetch(f"{base}/app.js")
    assert status == 200 and "javascript" in headers["content-type"]
    assert fetch(f"{base}/catalog/a.png")[2] == b"\x89PNG fake"
    assert fetch(f"{base}/catalog/..%2Fsecret.txt")[0] == 404
    assert fetch(f"{base}/catalog/../secret.txt")[0] == 404
    assert fetch(f"{base}/nope.html")[0] == 404


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1e3"])
def test_bad_content_length_is_refused_without_reading_the_body(
    server: tuple[str, list[dict[str, Any]]], length: str
) -> None:
    import socket

    base, seen = server
    host, port = base.removeprefix("http://").split(":")
    before = len(seen)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        # We never close our side: a server that read the body to EOF would time out here instead of answering.
        response = b""
        while chunk := sock.recv(4096):  # the server closes after refusing
            response += chunk
    assert response.startswith(b"HTTP/1.0 400") or response.startswith(b"HTTP/1.1 400"), response[:80]
    assert b"bad_request" in response
    assert len(seen) == before  # the handler never saw it
