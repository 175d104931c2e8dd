"""The one rule for device ids: an AWS IoT thing name. Device config, wire codec, rule bridge, search and API
all ask this module, so a device id accepted at one door is accepted at every other.

AWS IoT ``CreateThing``: ``thingName`` is 1-128 characters matching ``[a-zA-Z0-9:_-]+`` (no ``.``: ``.`` and
``..`` would also be normalized away by a browser in ``/api/devices/<id>/...``). A device id is a topic level
(``visualsearch/<id>/features``) and a URL path segment, so nothing else may be in it either.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

THING_NAME_MAX = 128
THING_NAME_RE = re.compile(r"[A-Za-z0-9:_-]{1,128}")
"""Use with ``fullmatch`` (``$`` would let a trailing newline through)."""
RULE = "an AWS IoT thing name: 1-128 of A-Z a-z 0-9 : _ -"


def is_thing_name(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and THING_NAME_RE.fullmatch(value) is not None


def check_thing_name(value: Any, what: str = "device id") -> str:
    """``value`` when it is a thing name; else ValueError saying what it must be (the value cut to 80)."""
    if not is_thing_name(value):
        raise ValueError(f"{what} {str(value)[:80]!r} is not {RULE}")
    return str(value)
