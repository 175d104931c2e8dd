"""The status message (``model.contracts.status``): the device's encoder and the one parser every side uses."""

from __future__ import annotations

import json

import pytest

from model.contracts.errors import Rejected
from model.contracts.limits import MAX_STATUS_BYTES
from model.contracts.status import encode_status, offline_payload, parse_status


def test_the_offline_payload_is_a_valid_status() -> None:
    assert parse_status(offline_payload("cam-1")) == {"v": 1, "device_id": "cam-1", "state": "offline"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"device_id": "a", "state": "online"}, "unknown_version"),
        ({"v": True, "device_id": "a", "state": "online"}, "unknown_version"),
        ({"v": 2, "device_id": "a", "state": "online"}, "unknown_version"),
        ({"v": 1, "device_id": "", "state": "online"}, "bad_device_id"),
        ({"v": 1, "device_id": "a", "state": "sleepy"}, "bad_state"),
        ({"v": 1, "device_id": "a", "state": "online", "pad": "x" * MAX_STATUS_BYTES}, "oversize"),
        ({"v": 1, "device_id": "a", "state": "online", "fps": float("nan")}, "not_finite"),
    ],
)
def test_status_rules_are_the_same_for_bytes_and_for_a_parsed_event(body: dict[str, object], reason: str) -> None:
    for form in (body, json.dumps(body).encode()):
        with pytest.raises(Rejected) as caught:
            parse_status(form)  # type: ignore[arg-type]
        assert caught.value.reason == reason


def test_a_payload_that_is_not_json_is_refused_as_such() -> None:
    with pytest.raises(Rejected) as caught:
        parse_status(b"{")
    assert caught.value.reason == "not_json"


def test_a_status_too_big_to_send_is_refused_before_it_leaves_the_device() -> None:
    with pytest.raises(Rejected) as caught:
        encode_status({"v": 1, "device_id": "a", "state": "online", "last_error": "x" * MAX_STATUS_BYTES})
    assert caught.value.reason == "oversize"
