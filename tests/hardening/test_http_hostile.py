"""The local API server as an attacker and a careless client meet it: the real process that `stack up` starts.

The hand-written local ``http.server`` executed a request body as a second request, ended the
connection without an answer on a NUL byte, reset concurrent clients (listen backlog 5), waited forever on
a slow client and served Python source. Each test below failed against it; the server is now uvicorn
running the one ASGI app (``cloud_lambda.api.app``), so parsing, limits and timeouts are a maintained
library's, and what is left to us (which files are served, the upload limit) is tested here.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from simulator.stack.processes import PythonServiceProcess, RedisProcess, free_port
from tests.hardening.conftest import Catalog, _pattern, count_case

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def http_server(
    hardening_catalog: Catalog, module_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PythonServiceProcess]:
    root = tmp_path_factory.mktemp("http")
    catalog = root / "catalog"
    catalog.mkdir()
    cv2.imwrite(str(catalog / "item-0.png"), _pattern(0))
    (catalog / "items.jsonl").write_text('{"id": "item-0"}\n')
    (root / "secret.txt").write_text("outside the catalog")
    port = free_port()
    server = PythonServiceProcess(
        name="http",
        workdir=root,
        port=port,
        module="simulator.stack.http_server",
        args=[
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--catalog-dir", str(catalog), "--request-timeout", str(TIMEOUT_S)),
        ],
        health_path="/api/health",
        env={
            "VS_INDEX_DIR": str(hardening_catalog.folder),
            "VS_REDIS_URL": module_redis.url,
            "VS_PHOTO_MODEL": str(hardening_catalog.model),
        },
    )
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


def exchange(server: PythonServiceProcess, raw: bytes, timeout: float = 15.0) -> bytes:
    """Send ``raw``, read until the server closes the connection (every request here ends with close)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def statuses(response: bytes) -> list[int]:
    """Status codes of every response in ``response`` (a body is not followed by CRLF: search, not split)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", response)]


def test_a_request_body_is_never_executed_as_a_second_request(http_server: PythonServiceProcess) -> None:
    count_case("http: body smuggled as a request")
    smuggled = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (
        b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(smuggled)).encode()
        + b"\r\n\r\n"
        + smuggled
        + b"GET /api/no-such-route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    # POST on a page is refused; its body is read (or the connection closed), never run: no health answer.
    got = statuses(exchange(http_server, raw))
    assert got[0] == 405 and 200 not in got, got


@pytest.mark.parametrize(
    "target", [b"/\x00", b"/api/devices/\x00/matches", b"/catalog/%00.png", b"/%00", b"/api/devices/%00/matches"]
)
def test_a_nul_byte_in_the_path_gets_an_answer(http_server: PythonServiceProcess, target: bytes) -> None:
    count_case("http: NUL byte in the path")
    response = exchange(http_server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(response) and 400 <= statuses(response)[0] < 500, response[:200]


@pytest.mark.parametrize(
    "path",
    [
        "/__init__.py",
        "/routes.py",
        "/handler.py",
        "/app.py",
        "/../api/handler.py",
        "/%2e%2e/api/handler.py",
        "/catalog/../secret.txt",
        "/catalog/..%2Fsecret.txt",
        "/catalog/items.jsonl",
        "/catalog/",
    ],
)
def test_no_source_or_data_file_is_served(http_server: PythonServiceProcess, path: str) -> None:
    count_case("http: source/data file requested")
    response = exchange(http_server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert statuses(response)[0] in (400, 404), response[:300]
    assert b"import" not in response and b"outside the catalog" not in response and b'"id"' not in response


def test_catalog_images_and_the_web_app_are_served(http_server: PythonServiceProcess) -> None:
    for path, kind in (("/", b"text/html"), ("/app.js", b"javascript"), ("/catalog/item-0.png", b"image/png")):
        response = exchange(http_server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = response.split(b"\r\n\r\n")[0].lower()
        assert statuses(response) == [200] and kind in head and b"x-content-type-options: nosniff" in head


@pytest.mark.parametrize("length", [b"-1", b"abc", b"+5", b"1e3", b"5, 6"])
def test_bad_content_length_is_a_400(http_server: PythonServiceProcess, length: bytes) -> None:
    count_case("http: bad Content-Length")
    raw = b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: " + length + b"\r\n\r\n"
    # We never close our side: a server that read "to EOF" would hang here instead of answering.
    assert statuses(exchange(http_server, raw))[0] == 400


def test_a_slow_client_is_cut_off(http_server: PythonServiceProcess) -> None:
    """Headers that never end, and a body that stops half-way, are closed by the server (timeouts)."""
    count_case("http: slow client")
    partial_headers = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: "
    response = exchange(http_server, partial_headers, timeout=30 * TIMEOUT_S)
    assert statuses(response) in ([], [408]), response[:200]
    half_body = b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n0123"
    response = exchange(http_server, half_body, timeout=30 * TIMEOUT_S)
    assert statuses(response) in ([], [408]), response[:200]


def test_oversize_upload_is_refused_from_the_header(http_server: PythonServiceProcess) -> None:
    count_case("http: oversize upload")
    raw = b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000000\r\n\r\n"
    with socket.create_connection((http_server.host, http_server.port), timeout=15) as sock:
        sock.sendall(raw)  # declares 1 GB, sends nothing: the answer comes from the header alone
        reply = sock.recv(4096)
    assert statuses(reply) == [413], reply[:200]


def test_concurrent_uploads_are_all_answered(http_server: PythonServiceProcess, tmp_path: Path) -> None:
    """24 photo searches at once: the old server's backlog of 5 reset a third of them."""
    count_case("http: 24 concurrent uploads")
    ok, png = cv2.imencode(".png", _pattern(3))
    assert ok
    body = png.tobytes()
    request = (
        b"POST /api/search?k=2 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    results: list[list[int] | str] = [[] for _ in range(24)]
    barrier = threading.Barrier(24)

    def one(n: int) -> None:
        try:
            barrier.wait(10)
            results[n] = statuses(exchange(http_server, request, timeout=60))
        except OSError as exc:
            results[n] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=one, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [[200]] * 24, results
