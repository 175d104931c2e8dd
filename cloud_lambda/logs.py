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
from typing import Any

from model.logs import JsonLinesFormatter

LOGGER_NAME = "visualsearch.cloud"


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """A logger that writes JSON lines to stderr (configured once; Lambda's root handler is left alone)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonLinesFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLinesFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": {"event": event, **fields}})


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
