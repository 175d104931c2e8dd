"""One bounded reader for every inbound JSON document.

Item 1: a status message nested ~980 levels deep passed the bridge, was stored, and every ``GET /api/devices``
answered 500 (a ``RecursionError`` escaped ``to_json``) until the device spoke again. Item 2: ``NaN`` in
catalog metadata made every frame matching that item fail to encode (retried, dropped, acked) and photo
search answer 500 with no log line.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import redis

from cloud_lambda.api import handler as api
from cloud_lambda.api.responses import to_json
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.search.service import SearchService
from model.contracts.bounded_json import check, loads
from model.contracts.errors import Rejected
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.bridge import RuleBridge
from tests.hardening.conftest import Catalog, count_case, redis_snapshot


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


REFUSED = [
    (deep(980), "too_deep"),
    (deep(17), "too_deep"),
    ("[" * 50_000 + "]" * 50_000, "too_deep"),
    ('{"x": NaN}', "not_finite"),
    ('{"x": Infinity}', "not_finite"),
    ('{"x": -Infinity}', "not_finite"),
    ('{"x": 1e400}', "not_finite"),
    ('{"x": -1e400}', "not_finite"),
    ('{"x": "\\ud800"}', "bad_text"),
    ('{"\\udfff": 1}', "bad_text"),
    ('{"x": ' + "9" * 5000 + "}", "not_json"),
    ("{", "not_json"),
    ("", "not_json"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_the_reader_refuses_with_a_reason(text: str, reason: str) -> None:
    count_case("json: hostile document")
    with pytest.raises(Rejected) as refused:
        loads(text.encode(), max_bytes=1_000_000)
    assert refused.value.reason == reason, refused.value


def test_the_reader_keeps_what_is_valid_and_measures_bytes() -> None:
    doc = {"v": 1, "a": [1, 2.5, None, True, "é"], "b": {"c": {"d": -3}}}
    assert loads(json.dumps(doc).encode(), max_bytes=200) == doc
    assert loads(deep(16), max_bytes=1000) is not None
    text = json.dumps({"t": "é" * 60})  # 60 characters, 120 bytes: the limit is on bytes
    with pytest.raises(Rejected, match="over the 100-byte limit") as refused:
        loads(text, max_bytes=100)
    assert refused.value.reason == "oversize"
    with pytest.raises(Rejected) as refused:
        loads(b"\xff{}", max_bytes=100)
    assert refused.value.reason == "not_json"


def test_check_applies_the_same_rules_to_a_parsed_document() -> None:
    nested: Any = 1
    for _ in range(3000):
        nested = {"a": nested}
    for value, reason in [(nested, "too_deep"), ({"x": float("nan")}, "not_finite"), ({"x": {1, 2}}, "not_json")]:
        with pytest.raises(Rejected) as refused:
            check(value)
        assert refused.value.reason == reason
    assert check({"ok": [1, {"b": 2.0}]}) == {"ok": [1, {"b": 2.0}]}


def test_to_json_never_raises() -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    for body in (nested, {"x": float("nan")}, {"x": {1}}):
        assert json.loads(to_json(body))["error"]["code"] == "internal"


def _devices(service: SearchService) -> tuple[int, dict[str, Any]]:
    api.set_service(service)
    try:
        for path in ("/api/devices", "/api/latest"):
            event = {"version": "2.0", "rawPath": path, "requestContext": {"http": {"method": "GET"}}}
            response = api.lambda_handler(event, None)
            if response["statusCode"] != 200:
                return response["statusCode"], json.loads(response["body"])
        return response["statusCode"], json.loads(response["body"])
    finally:
        api.set_service(None)


def test_a_deep_status_is_refused_by_the_bridge_and_the_api_keeps_answering(
    hardened_service: SearchService, redis_client: redis.Redis
) -> None:
    count_case("json: 980-deep status through the bridge")
    bridge = RuleBridge(
        hardened_service.handle_feature_event, hardened_service.handle_status_event, retry_delays_s=(), client_id="t"
    )
    before = redis_snapshot(redis_client)
    status = '{"v":1,"device_id":"cam-deep","state":"online","x":' + deep(980) + "}"
    bridge.handle("visualsearch/cam-deep/status", status.encode())
    assert bridge.counts["rejected:too_deep"] == 1
    assert redis_snapshot(redis_client) == before
    # The Lambda path (IoT rule → parsed event) refuses it too.
    event = json.loads('{"v":1,"device_id":"cam-deep","topic_device":"cam-deep","x":' + deep(200) + "}")
    assert hardened_service.handle_status_event(event)["reason"] == "too_deep"
    assert redis_snapshot(redis_client) == before
    assert _devices(hardened_service)[0] == 200


def test_a_deep_status_already_stored_does_not_take_the_api_down(
    hardened_service: SearchService, redis_client: redis.Redis
) -> None:
    """Data written before the fix (or by anything else) is read through the same bounded reader."""
    count_case("json: deep status already in Redis")
    redis_client.set("visualsearch:status:cam-old", '{"state":"online","x":' + deep(980) + "}")
    redis_client.lpush("visualsearch:matches:cam-old", '{"seq":1,"x":' + deep(980) + "}")
    redis_client.zadd("visualsearch:devices", {"cam-old": time.time()})
    try:
        status, body = _devices(hardened_service)
        assert status == 200, body
        old = next(d for d in body["devices"] if d["device_id"] == "cam-old")
        assert old["status"] is None and old.get("record") is None
    finally:
        redis_client.delete("visualsearch:status:cam-old", "visualsearch:matches:cam-old")
        redis_client.zrem("visualsearch:devices", "cam-old")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_metadata_in_a_store_loses_no_frame(
    hardened_service: SearchService, hardening_catalog: Catalog, value: float
) -> None:
    """A metadata store written by anything else (an old index, a hand-edited DynamoDB item) may hold NaN:
    the match keeps its id and score, the frame is stored, photo search answers."""
    count_case("json: NaN in stored metadata")
    store = hardened_service.metadata
    original = store.get_many(["item-1"])["item-1"]
    hardened_service.clear_metadata_cache()
    store.put_many([ItemRecord(id="item-1", model_id=hardening_catalog.model_id, title="x", extra={"price": value})])
    try:
        seq = int(time.time() * 1000) % 10**9
        payload = encode(
            FeatureMessage("cam-nan", seq, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[1])
        )
        result = hardened_service.handle_feature_event({**json.loads(payload), "topic_device": "cam-nan"})
        assert result["status"] == "accepted", result
        record = hardened_service.matches.latest("cam-nan", 1)[0]
        top = record["matches"][0]
        assert top["id"] == "item-1" and "price" not in top
        assert hardened_service.counters.get("metadata_invalid") >= 1
    finally:
        store.put_many([original])
        hardened_service.clear_metadata_cache()


def test_each_refusal_names_the_document_and_the_problem() -> None:
    """A refusal is logged and counted by reason, and read by a person: the message says which document and why."""
    cases = [
        (b'{"x": NaN}', "the non-JSON constant NaN is not a number"),
        (b'{"x": 1e400}', "1e400 overflows to inf"),
        (b'{"x": "\\ud800"}', "status holds a lone surrogate"),
        (b"\xff{}", "status is not UTF-8: invalid start byte at byte 0"),
        (b"{", "status is not JSON: Expecting property name"),
        (deep(5).encode(), "status nests deeper than 4 levels"),
        (b"[" * 5000 + b"]" * 5000, "status nests deeper than 4 levels"),
        (b"{" + b" " * 100 + b"}", "status is 102 bytes, over the 101-byte limit"),
    ]
    for data, message in cases:
        with pytest.raises(Rejected) as refused:
            loads(data, max_bytes=101 if data.startswith(b"{ ") else 100_000, max_depth=4, what="status")
        assert message in str(refused.value), (data[:20], str(refused.value))
    assert loads(b"{" + b" " * 99 + b"}", max_bytes=101, what="status") == {}  # exactly the limit
    assert loads(deep(4), max_bytes=1000, max_depth=4) is not None
    for value, message in [
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "event nests deeper than 4 levels"),
        ({"x": float("-inf")}, "event holds a non-finite number (-inf)"),
        ({"x": "\udfff"}, "event holds a lone surrogate"),
        ({"x": b"bytes"}, "event holds a bytes, which JSON cannot carry"),
    ]:
        with pytest.raises(Rejected, match=re.escape(message)):
            check(value, max_depth=4, what="event")
    with pytest.raises(Rejected, match=r"^document is not JSON"):
        loads(b"{", max_bytes=10)
    with pytest.raises(Rejected, match=r"^document holds"):
        check({"x": float("nan")})


def test_text_with_a_lone_surrogate_is_refused_not_raised() -> None:
    """A str argument is encoded with surrogatepass, so the refusal is the reader's, not a UnicodeEncodeError."""
    with pytest.raises(Rejected) as refused:
        loads('{"x": "\ud800"}', max_bytes=100)
    assert refused.value.reason == "not_json"
    assert loads('{"x": "é"}', max_bytes=100) == {"x": "é"}


def test_a_refusal_quotes_a_bounded_start_of_what_it_refuses() -> None:
    """A refusal is logged: it quotes the first 40 characters of an overflowing number and the first 120 of the
    parser's complaint, so a hostile 100 KB number does not become a 100 KB log line."""
    number = "1" * 1000 + "e400"
    with pytest.raises(Rejected) as refused:
        loads(f'{{"x": {number}}}', max_bytes=10_000)
    assert str(refused.value) == f"{number[:40]} overflows to inf"
    digits = "9" * 5000  # over Python's integer conversion limit: the parser's ValueError is long
    with pytest.raises(ValueError) as parser:
        json.loads(digits)
    assert len(str(parser.value)) > 120
    with pytest.raises(Rejected) as refused:
        loads(digits, max_bytes=10_000)
    assert str(refused.value) == f"document is not JSON: {str(parser.value)[:120]}"
