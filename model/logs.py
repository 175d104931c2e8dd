"""Structured JSON-lines logs, one idiom for every process of the product.

Every module logs through ``log = logging.getLogger(__name__)`` and :func:`log_event`: an event name (what
happened, snake_case) and the facts as fields, never prose with values inside. Each line is one JSON object
(``ts``, ``level``, ``logger``, ``msg`` = ``event``, then the fields) so Greengrass's log files, CloudWatch Logs
Insights and ``jq`` can filter on fields without parsing. Entry points install the formatter with
:func:`setup_logging`. It lives in ``model`` because that is the package every other one may import.
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


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """The one way to log: ``event`` names what happened (``"index_done"``), ``fields`` are its facts.
    ``exc_info=True`` adds the current exception's traceback (``exc`` in the line)."""
    exc_info = bool(fields.pop("exc_info", False))
    logger.log(level, event, extra={"fields": {"event": event, **fields}}, exc_info=exc_info)


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
