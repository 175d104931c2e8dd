"""One logging idiom (``model.logs``): loggers named by module (``logging.getLogger(__name__)``, or the cloud's
``get_logger(__name__)``, which adds its package handler), and every line through ``log_event(log, "event",
**fields)``: an event name and fields, never prose with values formatted into it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "edge_component", "cloud_lambda", "simulator", "bench")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
LOGGERS = {"log", "logger", "self.log", "LOG"}
WAITING: dict[str, str] = {}
"""Files whose conversion waits for other work on the same lines to land."""


def offenders() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in WAITING or rel in ("model/logs.py", "cloud_lambda/logs.py"):  # the helpers themselves
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                target = ast.unparse(node.func.value)
                if node.func.attr in LEVELS and target in LOGGERS:
                    found.append(f"{rel}:{node.lineno}: {target}.{node.func.attr}(...) instead of log_event")
                if node.func.attr == "getLogger" and node.args and ast.unparse(node.args[0]) != "__name__":
                    found.append(f"{rel}:{node.lineno}: logger named {ast.unparse(node.args[0])}, not __name__")
    return found


def test_every_log_line_is_an_event_with_fields_from_a_module_logger() -> None:
    assert not offenders()


def test_the_waiting_files_still_need_it() -> None:
    for rel in WAITING:
        source = (ROOT / rel).read_text()
        assert "log.info(" in source, f"{rel} is converted: drop it from WAITING"
