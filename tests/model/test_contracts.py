"""The contracts room (``model/contracts``): one definition of each agreement between device, bridge and cloud."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from model.contracts.errors import Rejected, VisualSearchError
from model.contracts.limits import MAX_STATUS_BYTES
from model.contracts.reasons import REASONS
from model.contracts.status import encode_status, offline_payload, parse_status
from model.contracts.topics import features_topic, matches_topic, parse_topic, status_topic, topic_filter

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("model", "edge_component", "cloud_lambda", "simulator")


def raised_reasons() -> dict[str, list[str]]:
    """reason code → where product code raises ``Rejected("<code>", ...)`` with it."""
    found: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Rejected"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found.setdefault(str(node.args[0].value), []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_reason_code_raised_is_listed_with_its_meaning() -> None:
    raised = raised_reasons()
    assert len(raised) > 15  # the scan sees the codec, the status parser, the topics and the search
    unlisted = {code: where for code, where in raised.items() if code not in REASONS}
    assert not unlisted, f"add these codes to model/contracts/reasons.py: {unlisted}"


def test_a_rejection_is_a_project_error_and_a_value_error_with_its_reason() -> None:
    exc = Rejected("oversize", "payload is 200000 bytes")
    assert isinstance(exc, VisualSearchError) and isinstance(exc, ValueError)
    assert (exc.reason, str(exc)) == ("oversize", "payload is 200000 bytes")


def test_topics_round_trip_and_anything_else_is_a_bad_topic() -> None:
    assert parse_topic(features_topic("cam-1")) == ("cam-1", "features")
    assert parse_topic(status_topic("cam-1"), ("status",)) == ("cam-1", "status")
    assert topic_filter("matches") == "visualsearch/+/matches" and matches_topic("a") == "visualsearch/a/matches"
    for bad in ("visualsearch/cam-1", "other/cam-1/features", "visualsearch//features", "visualsearch/a/b/features"):
        with pytest.raises(Rejected) as caught:
            parse_topic(bad)
        assert caught.value.reason == "bad_topic"
    with pytest.raises(Rejected):
        parse_topic(matches_topic("cam-1"), ("features", "status"))  # a kind the caller does not take


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


def test_a_status_too_big_to_send_is_refused_before_it_leaves_the_device() -> None:
    with pytest.raises(Rejected) as caught:
        encode_status({"v": 1, "device_id": "a", "state": "online", "last_error": "x" * MAX_STATUS_BYTES})
    assert caught.value.reason == "oversize"
