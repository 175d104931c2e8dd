"""The one reader for every JSON document that comes from outside: bounded in size and depth, numbers finite.

Python's ``json`` accepts ``NaN``/``Infinity`` (and turns ``1e400`` into ``inf``), parses nesting hundreds of
levels deep that ``json.dumps`` then cannot write back (``RecursionError``), and keeps lone surrogates
(``"\\ud800"``) that no UTF-8 encoder takes. Each of those let one message break a later step for everyone
(one status took the device list down; NaN in metadata lost frames). The rule bridge, the wire codec, the
search and status handlers, the API's reads from Redis and catalog metadata files all read through
:func:`loads` (bytes) or :func:`check` (a document someone else parsed, such as a Lambda event), so a
document is refused at the door with a reason instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from model.contracts.errors import Rejected

MAX_DEPTH = 16
"""Nesting (objects and arrays) a document may have; the deepest of ours (a status message) has 3."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(
    data: bytes | bytearray | memoryview | str, *, max_bytes: int, max_depth: int = MAX_DEPTH, what: str = "document"
) -> Any:
    """Parse ``data`` (UTF-8 JSON of at most ``max_bytes`` bytes) and :func:`check` it; raises :class:`~model.contracts.errors.Rejected`
    (reason oversize | not_json | too_deep | not_finite | bad_text)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise Rejected("oversize", f"{what} is {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_json", f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected("too_deep", f"{what} nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # also integer literals over Python's 4,300-digit conversion limit
        raise Rejected("not_json", f"{what} is not JSON: {str(exc)[:120]}") from None
    return check(value, max_depth=max_depth, what=what)


def check(value: Any, *, max_depth: int = MAX_DEPTH, what: str = "document") -> Any:
    """``value`` when it is plain JSON data within the rules (depth, finite floats, encodable text)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise Rejected("too_deep", f"{what} nests deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise Rejected("bad_text", f"{what} holds a lone surrogate (\\ud800-\\udfff): not encodable text")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Rejected("not_finite", f"{what} holds a non-finite number ({item})")
        elif item is not None and not isinstance(item, bool | int):
            raise Rejected("not_json", f"{what} holds a {type(item).__name__}, which JSON cannot carry")
    return value


def _constant(name: str) -> Any:
    raise Rejected("not_finite", f"the non-JSON constant {name} is not a number")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise Rejected("not_finite", f"{text[:40]} overflows to {number}")
    return number
