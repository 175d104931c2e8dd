"""The MQTT topics: ``visualsearch/{device_id}/{kind}``, built and parsed here and nowhere else.

The device publishes ``features``, ``status`` and (opt-in) ``thumbnail``; the search publishes ``matches``. The AWS IoT rules select
``topic(2)`` as the device id, so the second level must be the device's thing name and nothing else.
"""

from __future__ import annotations

from typing import Literal

from model.contracts.errors import Rejected
from model.contracts.thing_name import is_thing_name

TOPIC_PREFIX = "visualsearch"
Kind = Literal["features", "status", "thumbnail", "matches"]
KINDS: tuple[Kind, ...] = ("features", "status", "thumbnail", "matches")


def topic(device_id: str, kind: Kind) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/{kind}"


def features_topic(device_id: str) -> str:
    return topic(device_id, "features")


def status_topic(device_id: str) -> str:
    return topic(device_id, "status")


def matches_topic(device_id: str) -> str:
    return topic(device_id, "matches")


def topic_filter(kind: Kind) -> str:
    """The subscription for one kind from every device (``visualsearch/+/features``)."""
    return f"{TOPIC_PREFIX}/+/{kind}"


def parse_topic(name: str, kinds: tuple[Kind, ...] = KINDS) -> tuple[str, Kind]:
    """``(device_id, kind)`` of a topic name; :class:`Rejected` ``bad_topic`` unless it is
    ``visualsearch/<thing name>/<one of kinds>``."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == TOPIC_PREFIX and is_thing_name(parts[1]):
        for kind in kinds:
            if parts[2] == kind:
                return parts[1], kind
    raise Rejected("bad_topic", f"topic {name[:200]!r} is not {TOPIC_PREFIX}/<device>/{'|'.join(kinds)}")
