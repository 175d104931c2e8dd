"""The search handler against a real redis-server: matches, cap, idempotency, rejections, outage."""

from __future__ import annotations

import base64
import json
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from cloud_lambda.logs import PACKAGE_LOGGER
from cloud_lambda.matches import MatchStoreUnavailable, matches_key
from cloud_lambda.search.service import SearchService
from model.contracts.wire import encode_vector
from model.logs import JsonLinesFormatter
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import TinyCatalog, feature_event


def _client(redis_server: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_view_of_catalog_item_finds_it_first(service: SearchService, tiny_catalog: TinyCatalog, tiny_featurizer):
    # A camera-like view for the mechanics: slightly brighter, noisy, shifted crop of item 7.
    source = tiny_catalog.images[7]
    rng = np.random.default_rng(1)
    view = np.clip(source.astype(np.int16) + 12 + rng.integers(-6, 7, source.shape), 0, 255).astype(np.uint8)
    view = cv2.resize(view[4:-4, 6:-2], (320, 240), interpolation=cv2.INTER_LINEAR)
    vector = tiny_featurizer.featurize_frame(view)
    result = service.handle_feature_event(feature_event(vector, tiny_catalog.model_id, seq=10))
    assert result["status"] == "accepted", result
    assert result["top"] == "item-007"
    stored = service.matches.latest("cam-01", 1)[0]
    assert stored["matches"][0]["id"] == "item-007"
    assert stored["matches"][0]["title"] == 'Item 7\'s "title"'
    assert stored["matches"][0]["price"] == 7
    assert stored["model_id"] == tiny_catalog.model_id
    assert set(stored) >= {"v", "device_id", "seq", "ts", "searched_at", "model_id", "matches", "timing_ms"}
    assert len(stored["matches"]) == 3
    scores = [m["score"] for m in stored["matches"]]
    assert scores == sorted(scores, reverse=True)


def test_list_is_capped_newest_first_and_json(service: SearchService, tiny_catalog: TinyCatalog, redis_server):
    for seq in range(1, 13):
        vector = tiny_catalog.vectors[seq % len(tiny_catalog.vectors)]
        assert service.handle_feature_event(feature_event(vector, tiny_catalog.model_id, seq=seq))["status"] == (
            "accepted"
        )
    raw = _client(redis_server).lrange(matches_key("cam-01"), 0, -1)
    assert len(raw) == 5  # match_list_cap
    assert [json.loads(r)["seq"] for r in raw] == [12, 11, 10, 9, 8]
    assert [r["seq"] for r in service.matches.latest("cam-01", 2)] == [12, 11]
    assert service.matches.latest("never-seen", 10) == []


def test_replay_of_same_device_seq_writes_once(service: SearchService, tiny_catalog: TinyCatalog, redis_server):
    event = feature_event(tiny_catalog.vectors[3], tiny_catalog.model_id, seq=42)
    assert service.handle_feature_event(dict(event))["status"] == "accepted"
    assert service.handle_feature_event(dict(event))["status"] == "duplicate"
    # Same seq from another device is a different message.
    other = feature_event(tiny_catalog.vectors[3], tiny_catalog.model_id, device_id="cam-02", seq=42)
    assert service.handle_feature_event(other)["status"] == "accepted"
    client = _client(redis_server)
    assert client.llen(matches_key("cam-01")) == 1
    assert client.llen(matches_key("cam-02")) == 1
    assert 0 < client.ttl("visualsearch:seen:cam-01:42") <= 86_400
    assert service.counters.get("duplicate") == 1


def _malformed(vector: np.ndarray, model_id: str) -> list[tuple[str, Any]]:
    good = feature_event(vector, model_id, seq=5)

    def with_(**changes: Any) -> dict[str, Any]:
        event = dict(good)
        for key, value in changes.items():
            if value is _DROP:
                event.pop(key, None)
            else:
                event[key] = value
        return event

    unnormalized = encode_vector(vector * 3.0)
    nan_vec = base64.b64encode(np.full(vector.shape, np.nan, dtype="<f2").tobytes()).decode()
    other_dim = np.ones(vector.shape[0] + 8, dtype=np.float32) / np.sqrt(vector.shape[0] + 8)
    return [
        ("not_object", ["a", "list"]),
        ("not_object", "a string"),
        ("missing_field", with_(v=_DROP)),
        ("unknown_version", with_(v=3)),
        ("unknown_version", with_(v="1")),
        ("unknown_version", with_(v=True)),
        ("missing_field", with_(device_id=_DROP)),
        ("bad_device_id", with_(device_id="cam/01#", topic_device="cam-01")),
        ("bad_type", with_(device_id=17)),
        ("missing_field", with_(seq=_DROP)),
        ("bad_seq", with_(seq=-1)),
        ("bad_type", with_(seq=True)),
        ("bad_type", with_(seq=1.5)),
        ("bad_seq", with_(seq=2**63)),
        ("bad_type", with_(ts="yesterday")),
        ("bad_ts", with_(ts=-5)),
        ("bad_ts", with_(ts=1e12)),
        ("missing_field", with_(model_id=_DROP)),
        ("bad_model_id", with_(model_id="has space")),
        ("wrong_dim", with_(dim=0)),
        ("wrong_dim", with_(dim=9000)),
        ("wrong_dim", with_(dim=vector.shape[0] - 1)),
        ("bad_dtype", with_(dtype="int8")),
        ("bad_base64", with_(vector="!!not base64!!")),
        ("bad_type", with_(vector=[0.1, 0.2])),
        ("not_normalized", with_(vector=unnormalized)),
        ("not_finite", with_(vector=nan_vec)),
        ("bad_frame", with_(frame={"w": -1, "h": 720})),
        ("bad_timing", with_(timing_ms={"x": "slow"})),
        ("bad_timing", with_(timing_ms={f"s{i}": 1.0 for i in range(20)})),
        ("no_index_for_model", with_(model_id="efficientnet-lite0-int8-00000000")),
        ("device_mismatch", with_(topic_device="cam-99")),
        ("bad_topic", with_(topic_device=_DROP)),
        ("bad_topic", with_(topic_device="cam/+")),
        ("wrong_dim", with_(dim=other_dim.shape[0], vector=encode_vector(other_dim))),
        ("oversize", with_(padding="x" * 200_000)),
        ("missing_field", {"topic_device": "cam-01"}),
    ]


class _Drop:
    pass


_DROP = _Drop()


def test_malformed_events_are_rejected_and_leave_redis_untouched(
    service: SearchService, tiny_catalog: TinyCatalog, redis_server
):
    cases = _malformed(tiny_catalog.vectors[0], tiny_catalog.model_id)
    assert len(cases) >= 30
    client = _client(redis_server)
    for expected, event in cases:
        result = service.handle_feature_event(event)
        assert result["status"] == "rejected", (expected, result)
        assert result["reason"] == expected, (expected, result)
        assert result["message"]
    # Nothing but the refusal notes the web app shows (cloud_lambda/device_notes.py): no record, marker, status.
    assert [key for key in client.scan_iter() if not key.startswith(b"visualsearch:rejected:")] == []
    assert service.counters.get("rejected") == len(cases)
    assert service.counters.get("accepted") == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"x" * (200 * 1024), "oversize"),
        (b"\xff\xfe not utf8", "not_json"),
        (b"{not json", "not_json"),
        (b'{"v": 1, "ts": NaN}', "not_finite"),
        (b"[]", "not_object"),
    ],
)
def test_raw_payloads_from_the_bridge(service: SearchService, redis_server, payload: bytes, reason: str):
    result = service.handle_feature_payload("visualsearch/cam-01/features", payload)
    assert (result["status"], result["reason"]) == ("rejected", reason)
    assert _client(redis_server).dbsize() == 0


def test_raw_payload_topic_checks(service: SearchService, tiny_catalog: TinyCatalog):
    payload = json.dumps(
        {k: v for k, v in feature_event(tiny_catalog.vectors[1], tiny_catalog.model_id).items() if k != "topic_device"}
    ).encode()
    assert service.handle_feature_payload("visualsearch/cam-01/features", payload)["status"] == "accepted"
    assert service.handle_feature_payload("visualsearch/cam-02/features", payload)["reason"] == "device_mismatch"
    assert service.handle_feature_payload("other/cam-01/features", payload)["reason"] == "bad_topic"


def test_redis_outage_raises_then_recovers(service: SearchService, tiny_catalog: TinyCatalog, redis_server):
    event = feature_event(tiny_catalog.vectors[2], tiny_catalog.model_id, seq=100)
    redis_server.stop()
    with pytest.raises(MatchStoreUnavailable):
        service.handle_feature_event(dict(event))
    assert service.counters.get("failed") == 1
    redis_server.start()
    # The retried event is processed normally: nothing was half-written before the outage.
    assert service.handle_feature_event(dict(event))["status"] == "accepted"
    assert len(service.matches.latest("cam-01", 10)) == 1


def test_status_events(service: SearchService, redis_server):
    status = {
        "v": 1,
        "device_id": "cam-01",
        "ts": 1.0,
        "state": "online",
        "fps": 9.5,
        "topic_device": "cam-01",
        "topic_kind": "status",
    }
    assert service.handle_status_event(status)["status"] == "accepted"
    assert service.handle_status_event({**status, "device_id": "cam-02"})["reason"] == "device_mismatch"
    assert service.handle_status_event({**status, "blob": "x" * 20_000})["reason"] == "oversize"
    assert service.handle_status_event("nope")["reason"] == "not_object"
    # the same parser as the device's (model.contracts.status): version and state are checked here too
    assert service.handle_status_event({**status, "v": 2})["reason"] == "unknown_version"
    assert service.handle_status_event({**status, "state": "sleepy"})["reason"] == "bad_state"
    devices = service.matches.devices()
    assert [d["device_id"] for d in devices] == ["cam-01"]
    assert devices[0]["status"]["state"] == "online"
    assert "topic_device" not in devices[0]["status"]


def test_logs_are_json_lines_with_reasons_and_counters(service: SearchService, tiny_catalog: TinyCatalog, monkeypatch):
    import logging

    from cloud_lambda.search import service as service_module

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    service.log.addHandler(keep)
    monkeypatch.setattr(service_module, "COUNTERS_EVERY", 2)
    try:
        service.handle_feature_event(feature_event(tiny_catalog.vectors[0], "other-model-1", seq=1))
        service.handle_feature_event(feature_event(tiny_catalog.vectors[0], tiny_catalog.model_id, seq=2))
    finally:
        service.log.removeHandler(keep)
    # The line as written: through the JSON-lines handler on the package logger the service's module logger uses.
    package = logging.getLogger(PACKAGE_LOGGER)
    assert service.log.name.startswith(f"{PACKAGE_LOGGER}.") and not package.propagate
    handler = next(h for h in package.handlers if isinstance(h.formatter, JsonLinesFormatter))
    lines = [json.loads(handler.format(r)) for r in records]
    rejected = next(line for line in lines if line["event"] == "feature_rejected")
    assert rejected["reason"] == "no_index_for_model" and rejected["topic_device"] == "cam-01"
    counters = next(line for line in lines if line["event"] == "search_counters")
    assert counters["events"] == 2 and counters["rejected.no_index_for_model"] == 1
