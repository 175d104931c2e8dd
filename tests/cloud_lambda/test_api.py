"""The API Lambda with API Gateway HTTP API (payload 2.0) events, on a real redis-server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import cv2
import pytest

from cloud_lambda.api import handler as api
from cloud_lambda.search.service import SearchService
from tests.cloud_lambda.conftest import TinyCatalog, feature_event


def http_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"host": "abc.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"}},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if content_type:
        event["headers"]["content-type"] = content_type
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


@pytest.fixture
def app(service: SearchService) -> Iterator[SearchService]:
    api.set_service(service)
    yield service
    api.set_service(None)


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = api.lambda_handler(event, None)
    assert response["headers"]["access-control-allow-origin"] == "*"
    body = response["body"]
    return (
        response["statusCode"],
        (json.loads(body) if body and response["headers"]["content-type"] == "application/json" else {}),
        response["headers"],
    )


def test_matches_latest_and_devices(app: SearchService, tiny_catalog: TinyCatalog):
    status, body, _ = call(http_event("GET", "/api/devices/cam-01/matches/latest"))
    assert (status, body) == (200, {"device_id": "cam-01", "record": None})
    status, body, _ = call(http_event("GET", "/api/devices/cam-01/matches", {"n": "3"}))
    assert (status, body) == (200, {"device_id": "cam-01", "records": []})
    for seq in range(1, 5):
        app.handle_feature_event(feature_event(tiny_catalog.vectors[seq], tiny_catalog.model_id, seq=seq))
    app.handle_status_event({"v": 1, "device_id": "cam-01", "state": "online", "topic_device": "cam-01"})
    status, body, _ = call(http_event("GET", "/api/devices/cam-01/matches", {"n": "3"}))
    assert status == 200 and [r["seq"] for r in body["records"]] == [4, 3, 2]
    status, body, _ = call(http_event("GET", "/api/devices/cam-01/matches/latest"))
    assert body["record"]["seq"] == 4 and body["record"]["matches"][0]["id"] == "item-004"
    status, body, _ = call(http_event("GET", "/api/devices"))
    assert status == 200
    assert body["devices"][0]["device_id"] == "cam-01" and body["devices"][0]["status"]["state"] == "online"
    status, body, _ = call(http_event("GET", "/api/health"))
    assert status == 200 and body["redis"] == "ok" and body["model_id"] == tiny_catalog.model_id


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        (http_event("GET", "/api/devices/cam-01/matches", {"n": "0"}), 400, "bad_parameter"),
        (http_event("GET", "/api/devices/cam-01/matches", {"n": "abc"}), 400, "bad_parameter"),
        (http_event("GET", "/api/devices/cam-01/matches", {"n": "101"}), 400, "bad_parameter"),
        (http_event("GET", "/api/devices/bad%20id/matches/latest"), 400, "bad_device_id"),
        (http_event("GET", "/api/nothing"), 404, "not_found"),
        (http_event("DELETE", "/api/devices"), 405, "method_not_allowed"),
        (http_event("GET", "/api/search"), 405, "method_not_allowed"),
        (
            http_event("POST", "/api/search", body=b"GIF89a....", content_type="image/gif"),
            415,
            "unsupported_media_type",
        ),
        (http_event("POST", "/api/search", body=b"", content_type="image/png"), 400, "empty"),
        (http_event("POST", "/api/search", body=b"not a png", content_type="image/png"), 415, "not_image"),
        (
            http_event(
                "POST", "/api/search", body=b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024), content_type="image/png"
            ),
            413,
            "too_large",
        ),
        (http_event("POST", "/api/search", {"k": "0"}, body=b"x", content_type="image/png"), 400, "bad_parameter"),
    ],
)
def test_errors_are_json_with_status(app: SearchService, event, status: int, code: str):
    got_status, body, _ = call(event)
    assert got_status == status, body
    assert body["error"]["code"] == code and body["error"]["message"]


def test_photo_search(app: SearchService, tiny_catalog: TinyCatalog):
    _, png = cv2.imencode(".png", tiny_catalog.images[11])
    status, body, _ = call(http_event("POST", "/api/search", {"k": "4"}, body=png.tobytes(), content_type="image/png"))
    assert status == 200, body
    assert body["model_id"] == tiny_catalog.model_id
    assert len(body["matches"]) == 4 and body["matches"][0]["id"] == "item-011"
    assert set(body["timing_ms"]) == {"decode", "featurize", "search"}
    tiny = cv2.imencode(".png", tiny_catalog.images[0][:40, :40])[1].tobytes()
    status, body, _ = call(http_event("POST", "/api/search", body=tiny, content_type="image/png"))
    assert (status, body["error"]["code"]) == (400, "too_small")


def test_redis_down_is_503(app: SearchService, redis_server):
    redis_server.stop()
    status, body, _ = call(http_event("GET", "/api/devices/cam-01/matches/latest"))
    assert (status, body["error"]["code"]) == (503, "unavailable")
    status, body, _ = call(http_event("GET", "/api/health"))
    assert status == 503 and body["redis"] == "down"


def test_preflight_and_html_csp(app: SearchService):
    response = api.lambda_handler(http_event("OPTIONS", "/api/search"), None)
    assert response["statusCode"] == 204
    assert "POST" in response["headers"]["access-control-allow-methods"]
    response = api.lambda_handler(http_event("GET", "/"), None)
    if response["statusCode"] == 200:  # the web app belongs to the stack engineer; serve it when present
        assert "default-src 'self'" in response["headers"]["content-security-policy"]
        assert response["headers"]["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("requestContext", "x"),
        ("requestContext", {"http": ["GET"]}),
        ("requestContext", {"http": {"method": {"GET": 1}}}),
        ("headers", ["a"]),
        ("headers", {"content-type": ["image/png"]}),
        ("queryStringParameters", 3),
        ("queryStringParameters", {"n": None}),
        ("body", 7),
        ("body", {"image": "..."}),
        ("rawPath", ["/api/devices"]),
    ],
)
def test_malformed_event_parts_are_a_400(app: SearchService, field: str, value: Any):
    event = http_event("GET", "/api/devices")
    event[field] = value
    status, body, _ = call(event)
    assert status == 400 and body["error"]["code"] == "bad_event", body
    assert field.split(".")[0] in body["error"]["message"] or "event field" in body["error"]["message"]


def test_upload_over_the_limit_is_refused_without_decoding(app: SearchService, monkeypatch: pytest.MonkeyPatch):
    def refuse(*_a: object, **_k: object) -> bytes:
        raise AssertionError("an upload over the limit was base64-decoded")

    # Just over 4 MB decoded: its base64 (5.6 MB) is small enough to pass a raw event-size check.
    body = b"\xff\xd8\xff" + b"\0" * (4 * 1024 * 1024)
    event = http_event("POST", "/api/search", body=body, content_type="image/jpeg")
    monkeypatch.setattr(api.base64, "b64decode", refuse)
    status, err, _ = call(event)
    assert (status, err["error"]["code"]) == (413, "too_large")
    assert f"{len(body):,}" in err["error"]["message"]
    # Plain-text bodies are measured the same way.
    event = http_event("POST", "/api/search", content_type="image/jpeg")
    event["body"] = "x" * (4 * 1024 * 1024 + 1)
    status, err, _ = call(event)
    assert (status, err["error"]["code"]) == (413, "too_large")


def test_json_responses_escape_html_characters(app: SearchService):
    response = api.lambda_handler(http_event("GET", "/api/<script>alert('x&y')</script>"), None)
    assert response["statusCode"] == 404
    raw = response["body"]
    assert not any(c in raw for c in "<>&"), raw
    assert "\\u003cscript\\u003e" in raw
    # Still the same JSON once parsed.
    assert json.loads(raw)["error"]["message"] == "no route for /api/<script>alert('x&y')</script>"


# The example event of "Working with AWS Lambda proxy integrations for HTTP APIs" (payload format 2.0) in the
# API Gateway developer guide, with our route in place of /my/path: every field a real invocation carries.
DOC_EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/api/devices/cam-01/matches",
    "rawQueryString": "n=2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"n": "2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api-id",
        "authentication": {
            "clientCert": {
                "clientCertPem": "CERT_CONTENT",
                "subjectDN": "www.example.com",
                "issuerDN": "Example issuer",
                "serialNumber": "a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1",
                "validity": {"notBefore": "May 28 12:30:02 2019 GMT", "notAfter": "Aug  5 09:36:04 2021 GMT"},
            }
        },
        "authorizer": {"jwt": {"claims": {"claim1": "value1", "claim2": "value2"}, "scopes": ["scope1", "scope2"]}},
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "http": {
            "method": "GET",
            "path": "/api/devices/cam-01/matches",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "",
    "pathParameters": {"parameter1": "value1"},
    "isBase64Encoded": False,
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}


def test_a_documented_http_api_v2_event_reaches_the_route(app: SearchService, tiny_catalog: TinyCatalog):
    for seq in (1, 2, 3):
        app.handle_feature_event(feature_event(tiny_catalog.vectors[seq], tiny_catalog.model_id, seq=seq))
    status, body, headers = call(json.loads(json.dumps(DOC_EVENT)))
    assert status == 200 and [r["seq"] for r in body["records"]] == [3, 2], body
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_latest_of_every_device_is_one_paged_call(app: SearchService, tiny_catalog: TinyCatalog):
    for n, device in enumerate(["cam-a", "cam-b", "cam-c"]):
        app.handle_feature_event(feature_event(tiny_catalog.vectors[n], tiny_catalog.model_id, device_id=device, seq=7))
    app.handle_status_event({"v": 1, "device_id": "cam-idle", "state": "online", "topic_device": "cam-idle"})
    seen: dict[str, Any] = {}
    cursor = ""
    for _ in range(10):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body, _ = call(http_event("GET", "/api/latest", query))
        assert status == 200 and len(body["devices"]) <= 2 and body["total"] == 4
        seen.update({d["device_id"]: d for d in body["devices"]})
        if body["next"] is None:
            break
        cursor = body["next"]
    assert set(seen) == {"cam-a", "cam-b", "cam-c", "cam-idle"}
    assert seen["cam-a"]["record"]["seq"] == 7 and seen["cam-a"]["record"]["matches"][0]["id"] == "item-000"
    assert seen["cam-idle"]["record"] is None and seen["cam-idle"]["status"]["state"] == "online"
    for bad in ({"limit": "0"}, {"limit": "501"}, {"cursor": "-1"}, {"cursor": "x"}):
        status, body, _ = call(http_event("GET", "/api/latest", bad))
        assert (status, body["error"]["code"]) == (400, "bad_parameter"), bad
