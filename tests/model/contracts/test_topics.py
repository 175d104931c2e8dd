"""MQTT topics (``model.contracts.topics``): built and parsed in one place."""

from __future__ import annotations

import pytest

from model.contracts.errors import Rejected
from model.contracts.topics import features_topic, matches_topic, parse_topic, status_topic, topic_filter


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
