"""Structured JSON-lines logs and in-process counters for the cloud handlers.

One JSON object per line so CloudWatch Logs Insights (and ``jq`` locally) can filter on ``event``,
``reason`` or ``device_id`` without parsing prose.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

from model.logs import JsonLinesFormatter

PACKAGE_LOGGER = "cloud_lambda"


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` for a cloud module (pass ``__name__``), with the package's JSON-lines handler
    on stderr installed once on the ``cloud_lambda`` logger; it does not propagate, so Lambda's own root
    handler never writes the line a second time."""
    package = logging.getLogger(PACKAGE_LOGGER)
    if not any(isinstance(h.formatter, JsonLinesFormatter) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLinesFormatter())
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False
    return logging.getLogger(name)


class Counters:
    """Thread-safe named counters (accepted / rejected.<reason> / failed ...), logged as one JSON line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.started = time.time()

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
