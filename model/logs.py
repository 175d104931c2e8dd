"""Structured JSON-lines logs, one formatter for every process of the product.

One object per line (``ts``, ``level``, ``logger``, ``msg`` and any ``extra=`` fields) so Greengrass's log
files, CloudWatch Logs Insights and ``jq`` can filter on fields without parsing prose. It lives in ``model``
because that is the package every other one (device, cloud, laptop) may import.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came from ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """``{"ts":..., "level":..., "logger":..., "msg":..., <extra fields>}``; never raises on odd values.

    An ``extra={"fields": {...}}`` dict is flattened into the line (the cloud handlers log that way).
    """

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key == "fields" and isinstance(value, dict):
                body.update(value)
            else:
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"), ensure_ascii=False)


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default: stdout may carry data)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.Formatter.converter = time.gmtime
