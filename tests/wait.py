"""The one way tests wait: poll a condition until it holds, up to a deadline; never a fixed sleep before a check.

A deadline is a bound on a loaded CI machine, not a timing assertion: the condition normally holds in
milliseconds. For "nothing more arrives", wait for a sentinel sent after everything else instead of sleeping
(see ``tests.edge_component.conftest.Collector.drain``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.02) -> T:
    """``predicate()``'s first truthy value; AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stays_false(predicate: Callable[[], object], seconds: float, interval: float = 0.05) -> bool:
    """True when ``predicate()`` stays falsy for ``seconds``: only for promises of absence that no event can end
    early (a client the broker refuses never gets a CONNACK)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(interval)
    return True
