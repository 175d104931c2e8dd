"""What a camera's card needs besides its newest match, through the API Lambda on a real redis-server: why its
messages are refused (and what to do), the query thumbnail it sent, its recent history; and photo uploads sent
as forms (what `curl -F` and HTML forms send)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from cloud_lambda import device_notes
from cloud_lambda.api import handler as api
from cloud_lambda.device_notes import HINTS, NOTE_EVERY_S, rejected_key
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.thumbnail import Thumbnail, encode_thumbnail
from tests.cloud_lambda.conftest import TinyCatalog, feature_event
from tests.cloud_lambda.test_api import http_event


@pytest.fixture
def app(service: SearchService) -> Iterator[SearchService]:
    api.set_service(service)
    yield service
    api.set_service(None)


def get(path: str, query: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    response = api.lambda_handler(http_event("GET", path, query), None)
    headers = response["headers"]
    raw = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    return response["statusCode"], json.loads(raw) if headers["content-type"] == "application/json" else raw, headers


def online(service: SearchService, device: str) -> None:
    service.handle_status_event({"v": 1, "device_id": device, "state": "online", "topic_device": device})


def latest_entry(device: str, history: int = 0) -> dict[str, Any]:
    status, body, _ = get("/api/latest", {"history": str(history)} if history else None)
    assert status == 200
    return next(entry for entry in body["devices"] if entry["device_id"] == device)


def test_a_camera_of_another_model_shows_why_and_what_to_do(app: SearchService, tiny_catalog: TinyCatalog) -> None:
    online(app, "cam-fp32")
    other_model = feature_event(tiny_catalog.vectors[3], "efficientnet-lite0-fp32-0badc0de", "cam-fp32", seq=7)
    result = app.handle_feature_event(other_model)
    assert result["status"] == "rejected" and result["reason"] == "no_index_for_model"

    entry = latest_entry("cam-fp32")
    assert entry["record"] is None and entry["status"]["state"] == "online"  # "online", yet refused:
    refusal = entry["rejection"]
    assert refusal["reason"] == "no_index_for_model" and refusal["seq"] == 7
    assert "efficientnet-lite0-fp32-0badc0de" in refusal["message"] and tiny_catalog.model_id in refusal["message"]
    assert refusal["hint"] == HINTS["no_index_for_model"] and "re-index" in refusal["hint"]
    assert 0 < time.time() - refusal["at"] < 60
    ttl = app.matches.client.ttl(rejected_key("cam-fp32"))
    assert 0 < ttl <= 3600  # it goes away once the camera is fixed and quiet


def test_a_spoofed_device_id_is_named_as_such(app: SearchService, tiny_catalog: TinyCatalog) -> None:
    online(app, "cam-real")
    app.handle_feature_event(feature_event(tiny_catalog.vectors[1], tiny_catalog.model_id, "cam-other", 3, "cam-real"))
    refusal = latest_entry("cam-real")["rejection"]
    assert refusal["reason"] == "device_mismatch" and "thing name" in refusal["hint"]


def test_refusals_of_a_flooding_camera_are_noted_at_most_once_a_second(
    app: SearchService, tiny_catalog: TinyCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = []
    original = app.notes.client.set
    app.notes.client.set = lambda *a, **k: writes.append(a[0]) or original(*a, **k)  # type: ignore[method-assign]
    event = feature_event(tiny_catalog.vectors[3], "other-model-1", "cam-flood", seq=1)
    now = time.time()
    clock = SimpleNamespace(time=lambda: now)  # the notes' clock, moved by hand instead of sleeping
    monkeypatch.setattr(device_notes, "time", clock)
    for _ in range(50):
        app.handle_feature_event(event)
    assert writes == [rejected_key("cam-flood")]
    clock.time = lambda: now + NOTE_EVERY_S - 0.01
    app.handle_feature_event(event)
    assert len(writes) == 1  # still inside the second
    clock.time = lambda: now + NOTE_EVERY_S + 0.01
    app.handle_feature_event(event)
    assert len(writes) == 2


def test_a_note_that_cannot_be_written_does_not_fail_the_event(
    tiny_catalog: TinyCatalog, cloud_settings: CloudSettings
) -> None:
    service = SearchService(cloud_settings)
    service.notes.client = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    try:
        result = service.handle_feature_event(feature_event(tiny_catalog.vectors[3], "other-model-1", "cam-x", 1))
        assert result["status"] == "rejected"  # not raised: a retry would only be refused again
        assert service.counters.snapshot()["rejection_note_failed"] == 1
    finally:
        service.metadata.close()


def _jpeg(seed: int) -> bytes:
    image = cv2.resize(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), np.uint8), (112, 112))
    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes())


def test_the_newest_thumbnail_is_served_as_a_jpeg(app: SearchService) -> None:
    status, body, _ = get("/api/devices/cam-t/thumbnail")
    assert status == 404 and "thumbnail.enabled" in body["error"]["message"]
    online(app, "cam-t")
    for seq in (10, 11):
        event = {
            **json.loads(encode_thumbnail(Thumbnail("cam-t", seq, 1_763_700_000.0 + seq, _jpeg(seq)))),
            "topic_device": "cam-t",
        }
        assert app.handle_thumbnail_event(event)["status"] == "accepted"
    status, raw, headers = get("/api/devices/cam-t/thumbnail")
    assert status == 200 and headers["content-type"] == "image/jpeg" and raw == _jpeg(11)
    assert latest_entry("cam-t")["thumbnail"] == {"seq": 11, "ts": 1_763_700_011.0}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"topic_device": "cam-u"}, "device_mismatch"),
        ({"jpeg": base64.b64encode(b"GIF89a not a jpeg").decode()}, "bad_jpeg"),
        ({"jpeg": base64.b64encode(b"\xff\xd8\xff" + b"\0" * 9000 + b"\xff\xd9").decode()}, "oversize"),
        ({"v": 2}, "unknown_version"),
        ({"topic_device": "bad/topic"}, "bad_topic"),
    ],
)
def test_a_bad_thumbnail_is_refused_and_nothing_stored(app: SearchService, change: dict[str, Any], reason: str) -> None:
    event = {**json.loads(encode_thumbnail(Thumbnail("cam-t", 1, 1_763_700_000.0, _jpeg(1)))), "topic_device": "cam-t"}
    result = app.handle_thumbnail_event({**event, **change})
    assert (result["status"], result["reason"]) == ("rejected", reason)
    assert app.notes.thumbnail("cam-t") is None


def test_history_is_the_newest_records_in_brief(app: SearchService, tiny_catalog: TinyCatalog) -> None:
    for seq in range(1, 14):
        app.handle_feature_event(feature_event(tiny_catalog.vectors[seq], tiny_catalog.model_id, "cam-h", seq=seq))
    entry = latest_entry("cam-h", history=10)
    kept = min(10, app.settings.match_list_cap)  # the list itself is capped (this fixture keeps few)
    assert kept >= 3 and [h["seq"] for h in entry["history"]] == list(range(13, 13 - kept, -1))
    newest = entry["history"][0]
    assert newest["top"]["id"] == "item-013" and set(newest["top"]) == {"id", "title", "score"}
    assert newest["searched_at"] == entry["record"]["searched_at"]
    assert "history" not in latest_entry("cam-h")  # only when asked
    status, body, _ = get("/api/latest", {"history": "21"})
    assert status == 400 and body["error"]["code"] == "bad_parameter"


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "vsboundary42") -> tuple[bytes, str]:
    """A multipart/form-data body as browsers and curl write it (RFC 7578)."""
    parts = []
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: image/png\r\n" if filename else ""
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_search(body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(http_event("POST", "/api/search", {"k": "3"}, body, content_type), None)
    return response["statusCode"], json.loads(response["body"])


def test_a_photo_sent_as_a_form_is_searched_like_a_raw_body(app: SearchService, tiny_catalog: TinyCatalog) -> None:
    png = bytes(cv2.imencode(".png", tiny_catalog.images[11])[1].tobytes())
    raw_status, raw = post_search(png, "image/png")
    body, content_type = multipart([("note", None, b"from a form"), ("photo", "query.png", png)])
    form_status, form = post_search(body, content_type)
    assert (raw_status, form_status) == (200, 200)
    assert [m["id"] for m in form["matches"]] == [m["id"] for m in raw["matches"]] and form["matches"][0][
        "id"
    ] == "item-011"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([("note", None, b"no file here")], "bad_multipart"),
        ([("a", "a.png", b"x"), ("b", "b.png", b"y")], "bad_multipart"),
        ([("photo", "query.png", b"not an image")], "not_image"),
    ],
)
def test_a_form_without_exactly_one_image_is_refused(app: SearchService, fields: list, code: str) -> None:
    status, body = post_search(*multipart(fields))
    assert status in (400, 415) and body["error"]["code"] == code


def test_other_content_types_are_told_both_ways_to_send_a_photo(app: SearchService) -> None:
    status, body = post_search(b"x=1", "application/x-www-form-urlencoded")
    assert status == 415 and "multipart/form-data" in body["error"]["message"] and "curl -F" in body["error"]["message"]


def test_the_search_lambda_and_the_rule_bridge_take_thumbnail_events(
    app: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both doors: the IoT rule's event (topic_kind 'thumbnail') to the Lambda, the raw MQTT message locally."""
    from cloud_lambda.search import handler
    from simulator.stack.bridge import RuleBridge

    monkeypatch.setattr(handler, "get_service", lambda: app)
    sent = encode_thumbnail(Thumbnail("cam-l", 5, 1_763_700_005.0, _jpeg(5)))
    event = {**json.loads(sent), "topic_device": "cam-l", "topic_kind": "thumbnail"}
    assert handler.lambda_handler(event, None)["status"] == "accepted"
    bridge = RuleBridge(
        app.handle_feature_event,
        app.handle_status_event,
        retry_delays_s=(),
        client_id="t",
        on_thumbnail=app.handle_thumbnail_event,
    )
    result = bridge.handle("visualsearch/cam-b/thumbnail", encode_thumbnail(Thumbnail("cam-b", 6, 1.0, _jpeg(6))))
    assert result is not None and result["status"] == "accepted"
    assert app.notes.thumbnail("cam-l") == (_jpeg(5), 5, 1_763_700_005.0)
    assert app.notes.thumbnail("cam-b") == (_jpeg(6), 6, 1.0)
