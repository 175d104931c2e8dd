"""Hostile events through the search handler, the rule bridge's loop and the API handler, on a real redis-server.

Properties: every hostile event is answered (rejected with a reason, or a 4xx/5xx JSON error), nothing is
written to Redis for a rejected event (the whole database is compared), and no exception escapes the
bridge's per-message ``handle`` (the loop) or the Lambda entry points.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_lambda.api import handler as api
from cloud_lambda.search.service import SearchService
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge
from tests.hardening.conftest import Catalog, count_case, count_escape, redis_snapshot
from tests.hardening.test_wire_fuzz import FIELDS, hostile_values

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def event_for(catalog: Catalog, device_id: str = "cam-01", seq: int = 1, topic_device: str | None = None) -> dict:
    payload = encode(FeatureMessage(device_id, seq, time.time() - 60, catalog.model_id, catalog.vectors[seq % 8]))
    event: dict[str, Any] = json.loads(payload)
    event["topic_device"] = topic_device or device_id
    return event


def assert_rejected_and_nothing_written(
    service: SearchService, client: redis.Redis, event: Any, kind: str, call: str = "features"
) -> dict[str, Any]:
    before = redis_snapshot(client)
    count_case(kind)
    try:
        result = service.handle_feature_event(event) if call == "features" else service.handle_status_event(event)
    except Exception:
        count_escape(kind)
        raise
    assert result["status"] == "rejected", result
    assert result["reason"] and result["message"]
    assert redis_snapshot(client) == before, "a rejected event wrote to Redis"
    return result


@FUZZ
@given(hostile_values)
def test_search_event_of_any_shape(hardened_service: SearchService, redis_client: redis.Redis, value: Any) -> None:
    assert_rejected_and_nothing_written(hardened_service, redis_client, value, "search: any-shape event")
    if isinstance(value, dict):
        value = {**value, "topic_device": "cam-01"}
        assert_rejected_and_nothing_written(hardened_service, redis_client, value, "search: any-shape event")


@FUZZ
@given(st.sampled_from(FIELDS), hostile_values)
def test_search_event_with_one_hostile_field(
    hardened_service: SearchService, redis_client: redis.Redis, hardening_catalog: Catalog, field: str, value: Any
) -> None:
    event = event_for(hardening_catalog, seq=10**6)  # never stored: a valid replacement would be a duplicate-free write
    event[field] = value
    before = redis_snapshot(redis_client)
    count_case("search: hostile field")
    result = hardened_service.handle_feature_event(event)
    if result["status"] == "rejected":
        assert redis_snapshot(redis_client) == before
    else:  # the "hostile" value was a valid one (e.g. another seq): a normal JSON record, once
        assert result["status"] in ("accepted", "duplicate")
        for raw in redis_client.lrange("visualsearch:matches:cam-01", 0, -1):
            assert json.loads(raw)["device_id"] == "cam-01"


@FUZZ
@given(st.text(max_size=200))
def test_spoofed_or_unicode_topic_device(
    hardened_service: SearchService, redis_client: redis.Redis, hardening_catalog: Catalog, topic: str
) -> None:
    # The payload says cam-01; a topic naming any other device (or no valid device) is refused as spoofed.
    if topic == "cam-01":
        return
    event = event_for(hardening_catalog, seq=2, topic_device="cam-01")
    event["topic_device"] = topic
    result = assert_rejected_and_nothing_written(
        hardened_service, redis_client, event, "search: spoofed/unicode topic device"
    )
    assert result["reason"] in ("bad_topic", "device_mismatch")


@FUZZ
@given(st.binary(max_size=1024), st.text(max_size=60))
def test_rule_bridge_loop_survives_any_message(
    hardened_service: SearchService, redis_client: redis.Redis, payload: bytes, device: str
) -> None:
    bridge = _bridge(hardened_service)
    before = redis_snapshot(redis_client)
    for topic in (f"visualsearch/{device}/features", f"visualsearch/{device}/status", device):
        count_case("bridge: arbitrary topic + bytes")
        try:
            bridge.handle(topic, payload)  # the loop's per-message step: must never raise
        except Exception:
            count_escape("bridge: arbitrary topic + bytes")
            raise
    assert redis_snapshot(redis_client) == before


_BRIDGES: dict[int, RuleBridge] = {}


def _bridge(service: SearchService) -> RuleBridge:
    # Not connected: only the per-message path (rule → handler) is exercised; retries would only add sleeps.
    if id(service) not in _BRIDGES:
        _BRIDGES[id(service)] = RuleBridge(
            service.handle_feature_event, service.handle_status_event, retry_delays_s=(), client_id="fuzz"
        )
    return _BRIDGES[id(service)]


@FUZZ
@given(hostile_values, st.text(max_size=40))
def test_status_event_of_any_shape(
    hardened_service: SearchService, redis_client: redis.Redis, value: Any, topic_device: str
) -> None:
    event = value if not isinstance(value, dict) else {**value, "topic_device": topic_device}
    if isinstance(event, dict) and event.get("device_id") == topic_device:
        return  # a matching device id is a (loosely validated) status: accepted by design
    assert_rejected_and_nothing_written(hardened_service, redis_client, event, "search: status of any shape", "status")


def test_valid_event_is_stored_once_and_replays_are_duplicates(
    hardened_service: SearchService, redis_client: redis.Redis, hardening_catalog: Catalog
) -> None:
    """The control case: the same machinery does write, exactly once per (device, seq)."""
    event = event_for(hardening_catalog, device_id="cam-ok", seq=3)
    assert hardened_service.handle_feature_event(dict(event))["status"] == "accepted"
    for _ in range(3):
        assert hardened_service.handle_feature_event(dict(event))["status"] == "duplicate"
    assert redis_client.llen("visualsearch:matches:cam-ok") == 1


# --- API handler (API Gateway HTTP API payload v2) -------------------------------------------------------
@pytest.fixture(scope="module")
def api_service(hardened_service: SearchService) -> Iterator[SearchService]:
    api.set_service(hardened_service)
    yield hardened_service
    api.set_service(None)


def api_event(method: str, path: str, query: Any = None, headers: Any = None, body: Any = None, b64: Any = False):
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "queryStringParameters": query,
        "headers": headers if headers is not None else {"content-type": "image/jpeg"},
        "requestContext": {"http": {"method": method, "path": path}},
        "body": body,
        "isBase64Encoded": b64,
    }


def check_api(event: Any, kind: str) -> dict[str, Any]:
    count_case(kind)
    try:
        response = api.lambda_handler(event, None)
    except Exception:
        count_escape(kind)
        raise
    assert isinstance(response["statusCode"], int) and 200 <= response["statusCode"] < 600
    headers = response["headers"]
    if headers["content-type"].startswith("text/html"):
        assert "default-src 'self'" in headers["content-security-policy"]
    else:
        # Input echoed in an error message is JSON-encoded and served as JSON with nosniff: a browser never
        # renders it as HTML, so a reflected "<script>" stays inert text.
        assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
        if response["statusCode"] == 204:  # CORS preflight: no body at all
            assert response["body"] == ""
            return response
        body = json.loads(response["body"])
        if response["statusCode"] >= 400:
            assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    return response


PATHS = st.one_of(
    st.sampled_from(
        [
            "/",
            "/api/health",
            "/api/devices",
            "/api/search",
            "/api/devices/cam-01/matches",
            "/api/devices/cam-01/matches/latest",
        ]
    ),
    st.text(max_size=80).map(lambda t: "/api/devices/" + t + "/matches"),
    st.text(max_size=80).map(lambda t: "/" + t),
)


@FUZZ
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "<script>", ""]),
    PATHS,
    st.one_of(st.none(), st.dictionaries(st.sampled_from(["n", "k", "x"]), st.text(max_size=12), max_size=3)),
    st.one_of(st.none(), st.text(max_size=200)),
    st.booleans(),
)
def test_api_requests_of_any_content(
    api_service: SearchService, redis_client: redis.Redis, method: str, path: str, query: Any, body: Any, b64: bool
) -> None:
    before = redis_snapshot(redis_client)
    check_api(api_event(method, path, query, None, body, b64), "api: hostile request")
    assert redis_snapshot(redis_client) == before, "a read or a rejected request wrote to Redis"


@FUZZ
@given(hostile_values)
def test_api_event_of_any_shape(api_service: SearchService, value: Any) -> None:
    check_api(value, "api: any-shape event")


def test_api_event_fields_of_the_wrong_type(api_service: SearchService) -> None:
    for key, value in [("requestContext", "x"), ("headers", ["a"]), ("queryStringParameters", 3), ("body", 7)]:
        event = api_event("GET", "/api/devices")
        event[key] = value
        assert check_api(event, "api: wrong-type event fields")["statusCode"] == 400


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["image/jpeg", "image/png"]))
def test_photo_search_with_garbage_bytes(api_service: SearchService, data: bytes, content_type: str) -> None:
    event = api_event(
        "POST", "/api/search", {"k": "3"}, {"content-type": content_type}, base64.b64encode(data).decode(), True
    )
    response = check_api(event, "api: photo search garbage bytes")
    assert response["statusCode"] in (400, 413, 415)


def test_photo_search_base64_garbage_and_size_limit(api_service: SearchService) -> None:
    cases = [
        (api_event("POST", "/api/search", None, None, "%%%not base64%%%", True), 400),
        (api_event("POST", "/api/search", None, None, "A" * (6 * 1024 * 1024), True), 413),
        (api_event("POST", "/api/search", None, None, "A" * (7 * 1024 * 1024), True), 413),
        (api_event("POST", "/api/search", None, {"content-type": "text/html"}, "<script>", False), 415),
        (api_event("POST", "/api/search", {"k": "99999999"}, None, "x", False), 400),
    ]
    for event, status in cases:
        assert check_api(event, "api: base64 garbage / size limit")["statusCode"] == status


def test_rule_bridge_refuses_a_huge_integer_literal_with_a_reason_and_stores_the_next_message(
    hardened_service: SearchService, redis_client: redis.Redis, hardening_catalog: Catalog
) -> None:
    """Python's JSON reader raises ValueError for an integer literal over 4,300 digits: the bridge must refuse the
    message with a reason and write nothing, and carry on (it once ended a worker): the next valid message
    through the same bridge is stored."""
    count_case("bridge: huge integer literal")
    bridge = _bridge(hardened_service)
    before, refused = redis_snapshot(redis_client), bridge.counts["rejected:not_json"]
    result = bridge.handle("visualsearch/cam-big/features", b'{"v": 1, "seq": ' + b"9" * 5000 + b"}")
    assert result is None
    assert bridge.counts["rejected:not_json"] == refused + 1
    assert redis_snapshot(redis_client) == before
    valid = encode(FeatureMessage("cam-big", 1, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[1]))
    after = bridge.handle("visualsearch/cam-big/features", valid)
    assert after is not None and after["status"] == "accepted", after
    stored = [json.loads(raw) for raw in redis_client.lrange("visualsearch:matches:cam-big", 0, -1)]
    assert [record["seq"] for record in stored] == [1]
