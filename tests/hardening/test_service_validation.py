"""What the search service refuses, and why, at each exact boundary (a mutation pass once found 71 % of one-line
mutants of ``service.py`` surviving; nothing checked, for one, that metadata of another model is not joined onto
a match)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloud_lambda.device_notes import rejected_key
from cloud_lambda.matches import MatchStoreUnavailable
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.publish.base import MatchPublisher, MatchPublishError
from cloud_lambda.search.service import MAX_CLOCK_AHEAD_S, MAX_RECORD_BYTES, SearchService, _size
from cloud_lambda.settings import CloudSettings
from model.contracts.limits import MAX_PAYLOAD_BYTES, MAX_STATUS_BYTES
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.processes import RedisProcess
from tests.hardening.conftest import Catalog

NOW = 1_796_000_000.0


class Failing(MatchPublisher):
    name = "failing"

    def publish(self, topic: str, payload: bytes) -> None:
        raise MatchPublishError("broker away")


@pytest.fixture
def service(hardening_catalog: Catalog, redis_server: RedisProcess) -> Iterator[SearchService]:
    settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=redis_server.url, top_k=3)
    svc = SearchService(settings)
    svc.clock = lambda: NOW
    yield svc
    svc.metadata.close()


def event(catalog: Catalog, device: str = "cam-1", seq: int = 1, ts: float = NOW, **extra: Any) -> dict[str, Any]:
    payload = encode(FeatureMessage(device, seq, ts, catalog.model_id, catalog.vectors[seq % 8]))
    return {**json.loads(payload), "topic_device": device, **extra}


def refused(result: dict[str, Any]) -> str:
    assert result["status"] == "rejected" and result["message"], result
    return str(result["reason"])


def test_the_capture_time_window_is_exact(service: SearchService, hardening_catalog: Catalog) -> None:
    oldest, newest = NOW - service.settings.seen_ttl_s, NOW + MAX_CLOCK_AHEAD_S
    for seq, ts in enumerate([oldest, newest, NOW], start=1):
        assert service.handle_feature_event(event(hardening_catalog, seq=seq, ts=ts))["status"] == "accepted"
    behind = service.handle_feature_event(event(hardening_catalog, seq=9, ts=oldest - 0.01))
    ahead = service.handle_feature_event(event(hardening_catalog, seq=9, ts=newest + 0.01))
    assert refused(behind) == refused(ahead) == "ts_out_of_range"
    assert "behind" in behind["message"] and "ahead of" in ahead["message"]
    assert (
        f"{MAX_CLOCK_AHEAD_S} s ahead" in ahead["message"]
        and f"{service.settings.seen_ttl_s} s behind" in ahead["message"]
    )
    assert service.counters.get("rejected.ts_out_of_range") == 2 and service.counters.get("accepted") == 3


def test_the_event_size_limit_is_exact(service: SearchService, hardening_catalog: Catalog) -> None:
    base = event(hardening_catalog, pad="")
    size = len(json.dumps({k: v for k, v in base.items() if k != "topic_device"}, separators=(",", ":")))
    fits = {**base, "pad": "x" * (MAX_PAYLOAD_BYTES - size)}
    over = {**base, "pad": "x" * (MAX_PAYLOAD_BYTES - size + 1), "seq": 2}
    assert service.handle_feature_event(fits)["status"] == "accepted"
    assert refused(service.handle_feature_event(over)) == "oversize"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"topic_device": None}, "bad_topic"),
        ({"topic_device": "cam.1"}, "bad_topic"),
        ({"topic_device": "cam-2"}, "device_mismatch"),
        ({"model_id": "another-model"}, "no_index_for_model"),
        ({"x": float("nan")}, "not_finite"),
        ({"x": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}, "too_deep"),
    ],
)
def test_each_refusal_has_its_reason(
    service: SearchService, hardening_catalog: Catalog, change: dict[str, Any], code: str
) -> None:
    message = event(hardening_catalog)
    message.update(change)
    if change.get("topic_device", 0) is None:
        message.pop("topic_device")
    result = service.handle_feature_event(message)
    assert refused(result) == code
    assert service.counters.get(f"rejected.{code}") == 1 and service.counters.get("rejected") == 1


def test_a_vector_of_another_size_and_model_are_named(service: SearchService, hardening_catalog: Catalog) -> None:
    import numpy as np

    wide = FeatureMessage("cam-1", 1, NOW, hardening_catalog.model_id, np.ones(8, np.float32) / np.sqrt(8))
    assert refused(service.handle_feature_event({**json.loads(encode(wide)), "topic_device": "cam-1"})) == "wrong_dim"
    other = service.handle_feature_event(event(hardening_catalog, model_id="m-2"))
    assert "'m-2'" in other["message"] and hardening_catalog.model_id in other["message"]
    assert refused(service.handle_feature_event("not an object")) == "not_object"
    assert refused(service.handle_feature_payload("visualsearch/cam-1/status", b"{}")) == "bad_topic"
    payload = encode(FeatureMessage("cam-1", 3, NOW, hardening_catalog.model_id, hardening_catalog.vectors[3]))
    assert service.handle_feature_payload("visualsearch/cam-1/features", payload)["status"] == "accepted"
    assert refused(service.handle_feature_payload("visualsearch/cam-9/features", payload)) == "device_mismatch"


def test_the_result_of_an_accepted_message(service: SearchService, hardening_catalog: Catalog) -> None:
    result = service.handle_feature_event(event(hardening_catalog, seq=4))
    assert result == {"status": "accepted", "device_id": "cam-1", "seq": 4, "matches": 3, "top": "item-4"}
    again = service.handle_feature_event(event(hardening_catalog, seq=4))
    assert again == {"status": "duplicate", "device_id": "cam-1", "seq": 4}
    assert service.counters.get("duplicate") == 1
    (record,) = service.matches.latest("cam-1", 5)
    assert (
        record["v"] == 1
        and record["seq"] == 4
        and record["ts"] == NOW
        and record["model_id"] == hardening_catalog.model_id
    )
    assert set(record["timing_ms"]) >= {"search"} and "trimmed" not in record
    assert record["matches"][0]["id"] == "item-4" and record["matches"][0]["score"] > 0.99


def test_metadata_of_another_model_is_not_joined(service: SearchService, hardening_catalog: Catalog) -> None:
    service.metadata.put_many([ItemRecord(id="item-5", model_id="other-model", title="wrong facts", image_url="/x")])
    service.clear_metadata_cache()
    try:
        service.handle_feature_event(event(hardening_catalog, seq=5))
        top = service.matches.latest("cam-1")[0]["matches"][0]
        assert top["id"] == "item-5" and top["title"] == "" and top["image_url"] == ""
        assert service.counters.get("metadata_missing") >= 1
    finally:
        service.metadata.put_many(
            [ItemRecord(id="item-5", model_id=hardening_catalog.model_id, title="<b>item-5</b> O'Brien", image_url="")]
        )
        service.clear_metadata_cache()


def test_min_score_drops_weak_matches(hardening_catalog: Catalog, redis_server: RedisProcess) -> None:
    settings = CloudSettings.build(
        index_dir=str(hardening_catalog.folder), redis_url=redis_server.url, top_k=8, min_score=0.99
    )
    svc = SearchService(settings)
    try:
        matches = svc.find(hardening_catalog.vectors[2])
        assert [m["id"] for m in matches] == ["item-2"]
        assert [m["id"] for m in svc.find(hardening_catalog.vectors[2], k=8)] == ["item-2"]
    finally:
        svc.metadata.close()


def test_a_store_failure_is_raised_and_counted(service: SearchService, hardening_catalog: Catalog) -> None:
    def refuse(record: dict[str, Any]) -> bool:
        raise MatchStoreUnavailable("redis write failed: OOM")

    service.matches.push = refuse  # type: ignore[method-assign]
    with pytest.raises(MatchStoreUnavailable):
        service.handle_feature_event(event(hardening_catalog))
    assert service.counters.get("failed") == 1 and service.counters.get("accepted") == 0


def test_a_failed_notification_is_counted_and_the_record_kept(
    hardening_catalog: Catalog, redis_server: RedisProcess
) -> None:
    settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=redis_server.url)
    svc = SearchService(settings, Failing())
    svc.clock = lambda: NOW
    try:
        assert svc.handle_feature_event(event(hardening_catalog))["status"] == "accepted"
        assert svc.counters.get("publish_failed") == 1 and len(svc.matches.latest("cam-1")) == 1
    finally:
        svc.metadata.close()


def test_a_record_is_trimmed_only_past_the_limit(service: SearchService) -> None:
    record = {
        "device_id": "cam-1",
        "seq": 1,
        "matches": [{"id": "a", "score": 1.0, "title": "", "image_url": "", "x": ""}],
    }
    size = len(json.dumps(record, separators=(",", ":")))
    record["matches"][0]["x"] = "y" * (MAX_RECORD_BYTES - size)
    assert service._fit(record) is record
    record["matches"][0]["x"] += "y"
    fitted = service._fit(record)
    assert fitted["trimmed"] is True and fitted["matches"] == [{"id": "a", "score": 1.0, "title": "", "image_url": ""}]
    assert service.counters.get("record_trimmed") == 1
    many = {
        "device_id": "cam-1",
        "seq": 2,
        "matches": [{"id": f"i{n}", "score": 0.5, "title": "t" * 500, "image_url": "u" * 2000} for n in range(200)],
    }
    fitted = service._fit(many)
    size = len(json.dumps(fitted, separators=(",", ":")))
    assert size <= MAX_RECORD_BYTES and 0 < len(fitted["matches"]) < 200
    assert all(len(m["title"]) == 200 and len(m["image_url"]) == 2000 for m in fitted["matches"])
    assert [m["id"] for m in fitted["matches"]] == [f"i{n}" for n in range(len(fitted["matches"]))]  # best first kept
    long_url = {
        "device_id": "cam-1",
        "seq": 3,
        "matches": [{"id": "a", "score": 1.0, "image_url": "u" * 2049, "x": "z" * MAX_RECORD_BYTES}],
    }
    assert service._fit(long_url)["matches"][0]["image_url"] == ""


def test_status_events(service: SearchService) -> None:
    status = {"v": 1, "device_id": "cam-1", "state": "online", "topic_device": "cam-1"}
    assert service.handle_status_event(dict(status)) == {"status": "accepted", "device_id": "cam-1"}
    (device,) = service.matches.devices()
    assert (
        device["last_seen"] == NOW and device["status"]["state"] == "online" and "topic_device" not in device["status"]
    )
    assert service.counters.get("status") == 1
    for change, code in [
        ({"topic_device": "cam.1"}, "bad_topic"),
        ({"topic_device": "cam-2"}, "device_mismatch"),
        ({"fps": float("inf")}, "not_finite"),
        ({"pad": "x" * MAX_STATUS_BYTES}, "oversize"),
    ]:
        result = service.handle_status_event({**status, **change})
        assert refused(result) == code
        assert service.counters.get(f"status_rejected.{code}") == 1
    assert refused(service.handle_status_event(["not", "an", "object"])) == "not_object"


def test_refusals_are_logged_with_reason_message_device_and_seq(
    service: SearchService, hardening_catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    service.handle_feature_event(event(hardening_catalog, seq=11, model_id="m-2"))
    service.handle_feature_payload("visualsearch/cam.9/features", b"{}")
    service.handle_status_event({"v": 1, "device_id": "cam-1", "state": "online", "topic_device": "cam-2"})
    fields = [r.__dict__["fields"] for r in caplog.records if isinstance(r.__dict__.get("fields"), dict)]
    rejected = [f for f in fields if f["event"] == "feature_rejected"]
    assert rejected[0]["reason"] == "no_index_for_model" and rejected[0]["topic_device"] == "cam-1"
    assert rejected[0]["seq"] == 11 and "'m-2'" in rejected[0]["message"]
    assert rejected[1]["reason"] == "bad_topic" and rejected[1]["topic_device"] == "visualsearch/cam.9/features"
    assert rejected[1]["seq"] is None
    status = [f for f in fields if f["event"] == "status_rejected"]
    assert status == [
        {
            "event": "status_rejected",
            "reason": "device_mismatch",
            "message": "status device_id 'cam-1' differs from the topic's",
        }
    ]
    assert all(
        r.levelno == logging.WARNING
        for r in caplog.records
        if r.__dict__.get("fields", {}).get("event", "").endswith("rejected")
    )


def test_each_refusal_says_what_was_wrong(service: SearchService, hardening_catalog: Catalog) -> None:
    """The message is what an operator reads in the log and on the camera's card: it names the problem."""
    base = event(hardening_catalog, pad="")
    size = len(json.dumps({k: v for k, v in base.items() if k != "topic_device"}, separators=(",", ":")))
    over = {**base, "pad": "x" * (MAX_PAYLOAD_BYTES - size + 1)}
    no_topic = {k: v for k, v in base.items() if k != "topic_device"}
    deep: Any = 1
    for _ in range(20):
        deep = [deep]
    for message, words in [
        (["not", "an", "object"], "event must be a JSON object, got list"),
        (no_topic, "event lacks a valid 'topic_device' (the IoT rule must select topic(2))"),
        ({**base, "x": deep}, "event nests deeper than 16 levels"),
        (over, f"event is {MAX_PAYLOAD_BYTES + 1} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"),
        ({**base, "topic_device": "cam-2"}, "device_id 'cam-1' differs from the topic's 'cam-2': refused as spoofed"),
        (
            event(hardening_catalog, ts=NOW + 1000),
            f"capture time {NOW + 1000:.3f} is 1,000 s ahead of the cloud's clock",
        ),
        (event(hardening_catalog, ts=NOW - 90_000), f"capture time {NOW - 90_000:.3f} is 90,000 s behind the cloud's"),
    ]:
        result = service.handle_feature_event(message)
        assert result["status"] == "rejected" and result["message"].startswith(words), (words, result)
    status = {"v": 1, "device_id": "x" * 128, "state": "online", "topic_device": "cam-1"}
    for message, words in [
        (["not", "an", "object"], "status must be a JSON object, got list"),
        ({**status, "topic_device": "cam.1"}, "status event lacks a valid 'topic_device'"),
        (status, f"status device_id {'x' * 80!r} differs from the topic's"),
    ]:
        result = service.handle_status_event(message)
        assert result == {"status": "rejected", "reason": result["reason"], "message": words}


def test_a_refusal_is_noted_for_the_cameras_card(service: SearchService, hardening_catalog: Catalog) -> None:
    """The web app shows why a camera's messages are refused (reason, message, seq): the note is keyed by the
    topic's device, which the rule vouches for; a refusal without a valid topic device notes nothing."""
    client = service.matches.client
    result = service.handle_feature_event(event(hardening_catalog, seq=11, model_id="m-2"))
    note = json.loads(client.get(rejected_key("cam-1")))
    assert (note["reason"], note["message"], note["seq"]) == ("no_index_for_model", result["message"], 11)
    status = {"v": 1, "device_id": "cam-3", "state": "online", "topic_device": "cam-2"}
    result = service.handle_status_event(status)
    note = json.loads(client.get(rejected_key("cam-2")))
    assert (note["reason"], note["message"], note["seq"]) == ("device_mismatch", result["message"], None)
    service.handle_feature_event({**event(hardening_catalog), "topic_device": "cam.4"})
    service.handle_status_event({**status, "topic_device": "cam.4"})
    assert sorted(client.keys(rejected_key("*"))) == [rejected_key("cam-1").encode(), rejected_key("cam-2").encode()]


def test_a_refusal_log_line_is_bounded_and_typed(
    service: SearchService, hardening_catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """Fields an attacker controls are cut (message 300, device 200 characters) and logged only when they have
    the field's type, so a log query on ``seq`` or ``topic_device`` never meets a list or a number."""
    caplog.set_level(logging.INFO)
    other_model = service.handle_feature_event(event(hardening_catalog, model_id="m-" + "2" * 100))
    long_topic = "visualsearch/" + "x" * 400 + "/features"
    service.handle_feature_payload(long_topic, b"{}")
    service.handle_feature_event({**event(hardening_catalog), "topic_device": 7, "seq": "8"})
    fields = [r.__dict__["fields"] for r in caplog.records if isinstance(r.__dict__.get("fields"), dict)]
    first, topic, second = [f for f in fields if f["event"] == "feature_rejected"]
    assert len(other_model["message"]) > 300 and first["message"] == other_model["message"][:300]
    assert topic["topic_device"] == long_topic[:200]
    assert second["topic_device"] is None and second["seq"] is None and second["reason"] == "bad_topic"


def test_a_trimmed_record_keeps_every_match_that_fits_and_says_so_in_the_log(
    service: SearchService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slim = [{"id": "a", "score": 1.0, "title": "t", "image_url": "u" * 2048}]  # a 2048-character URL is kept
    record: dict[str, Any] = {"device_id": "cam-1", "seq": 4, "pad": "", "matches": [{**slim[0], "x": "z" * 200_000}]}
    record["pad"] = "p" * (MAX_RECORD_BYTES - _size({**record, "matches": slim, "trimmed": True}))
    fitted = service._fit(record)
    assert fitted["matches"] == slim and _size(fitted) == MAX_RECORD_BYTES  # exactly the limit fits
    (line,) = [r for r in caplog.records if r.__dict__.get("fields", {}).get("event") == "record_trimmed"]
    assert line.levelno == logging.WARNING
    assert line.__dict__["fields"] == {"event": "record_trimmed", "device_id": "cam-1", "seq": 4, "kept": 1}


def test_a_record_says_when_it_was_searched_and_how_long_the_search_took(
    service: SearchService, hardening_catalog: Catalog
) -> None:
    """``searched_at`` is the cloud's wall clock (µs), ``timing_ms.search`` the search's own milliseconds beside the
    device's stage timings. A search made to take at least 20 ms shows at least 20 ms, and no more than the call."""
    find = service.find

    def slow_find(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return find(*args, **kwargs)

    service.find = slow_find  # type: ignore[method-assign]
    message = event(hardening_catalog, seq=6, timing_ms={"capture": 1.5, "featurize": 7.25})
    before, started = time.time(), time.perf_counter()
    service.handle_feature_event(message)
    elapsed_ms, after = (time.perf_counter() - started) * 1000, time.time()
    (record,) = service.matches.latest("cam-1")
    assert record["device_id"] == "cam-1"
    assert before - 1e-6 <= record["searched_at"] <= after + 1e-6
    assert record["searched_at"] == round(record["searched_at"], 6)
    timing = record["timing_ms"]
    assert timing["capture"] == 1.5 and timing["featurize"] == 7.25
    assert 20 <= timing["search"] <= elapsed_ms and timing["search"] == round(timing["search"], 3)


def test_a_store_failure_is_logged_with_the_message_it_failed(
    service: SearchService, hardening_catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(record: dict[str, Any]) -> bool:
        raise MatchStoreUnavailable("redis write failed: OOM")

    caplog.set_level(logging.INFO)
    service.matches.push = refuse  # type: ignore[method-assign]
    with pytest.raises(MatchStoreUnavailable):
        service.handle_feature_event(event(hardening_catalog, seq=12))
    (line,) = [r for r in caplog.records if r.__dict__.get("fields", {}).get("event") == "feature_failed"]
    assert line.levelno == logging.ERROR
    assert line.__dict__["fields"] == {
        "event": "feature_failed",
        "device_id": "cam-1",
        "seq": 12,
        "error": "redis write failed: OOM",
    }


def test_metadata_that_json_cannot_carry_is_refused_naming_the_item(
    service: SearchService, hardening_catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """Logged as ``metadata_invalid`` with the item id (cut to 200) and the reason naming it (cut to 80)."""
    caplog.set_level(logging.INFO)
    item_id = "i" * 250  # catalog ids may have up to 256 characters
    bad = ItemRecord(
        id=item_id, model_id=hardening_catalog.model_id, title="t", image_url="", extra={"x": float("nan")}
    )
    assert service._match_fields(bad) is None and service.counters.get("metadata_invalid") == 1
    (line,) = [r for r in caplog.records if r.__dict__.get("fields", {}).get("event") == "metadata_invalid"]
    assert line.levelno == logging.WARNING
    assert line.__dict__["fields"] == {
        "event": "metadata_invalid",
        "item_id": item_id[:200],
        "error": f"metadata of {item_id[:80]!r} holds a non-finite number (nan)",
    }


def test_a_match_whose_metadata_is_missing_shows_its_id_and_is_counted(
    service: SearchService, hardening_catalog: Catalog
) -> None:
    entry = service.catalogs.get(hardening_catalog.model_id)
    entry.metadata_cache.clear()
    stored = entry.metadata.get_many
    entry.metadata.get_many = lambda ids: {k: v for k, v in stored(ids).items() if k != "item-2"}  # type: ignore[method-assign]
    try:
        matches = service.find(hardening_catalog.vectors[2])
    finally:
        entry.metadata.get_many = stored  # type: ignore[method-assign]
        entry.metadata_cache.clear()
    assert matches[0] == {"id": "item-2", "score": matches[0]["score"], "title": "", "image_url": ""}
    assert service.counters.get("metadata_missing") == 1 and all(m["title"] for m in matches[1:])


def test_find_returns_k_matches_when_asked_and_scores_to_five_decimals(
    service: SearchService, hardening_catalog: Catalog
) -> None:
    assert len(service.find(hardening_catalog.vectors[1])) == service.settings.top_k == 3
    (only,) = service.find(hardening_catalog.vectors[1], k=1)
    assert only["id"] == "item-1"
    scores = [m["score"] for m in service.find(hardening_catalog.vectors[5], k=8)]
    assert scores == [round(s, 5) for s in scores] and scores == sorted(scores, reverse=True)


def test_a_duplicate_is_logged_with_its_device_and_seq_and_a_frame_with_no_match_has_no_top(
    hardening_catalog: Catalog, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    import numpy as np

    settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=redis_server.url, min_score=0.999)
    svc = SearchService(settings)
    svc.clock = lambda: NOW
    caplog.set_level(logging.INFO)
    svc.log.addHandler(caplog.handler)  # the cloud's logger writes its own lines: read them here too
    try:
        dim = hardening_catalog.dim
        unlike = np.resize(np.array([1.0, -1.0], np.float32), dim) / np.sqrt(dim)  # like no catalog item
        message = {**json.loads(encode(FeatureMessage("cam-1", 5, NOW, hardening_catalog.model_id, unlike)))}
        message["topic_device"] = "cam-1"
        result = svc.handle_feature_event(message)
        assert result == {"status": "accepted", "device_id": "cam-1", "seq": 5, "matches": 0, "top": None}
        assert svc.handle_feature_event(message)["status"] == "duplicate"
    finally:
        svc.log.removeHandler(caplog.handler)
        svc.metadata.close()
    lines = {id(r): r for r in caplog.records if r.__dict__.get("fields", {}).get("event") == "feature_duplicate"}
    (line,) = lines.values()  # once, whether or not the cloud's logger also propagates to the root
    assert line.__dict__["fields"] == {"event": "feature_duplicate", "device_id": "cam-1", "seq": 5}


def test_a_vector_of_another_size_is_refused_with_both_sizes(
    service: SearchService, hardening_catalog: Catalog
) -> None:
    import numpy as np

    wide = FeatureMessage("cam-1", 1, NOW, hardening_catalog.model_id, np.ones(8, np.float32) / np.sqrt(8))
    result = service.handle_feature_event({**json.loads(encode(wide)), "topic_device": "cam-1"})
    assert result["message"] == f"vector has 8 dims, the index {hardening_catalog.dim}"
