"""``stack.json``: what ``stack up`` started, so ``down`` stops exactly that and a second ``up`` finds it.

A pid alone is not an identity (pids are reused), so each entry also records the process's command line
and ``down`` only signals a pid whose ``/proc/<pid>/cmdline`` still matches.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

STATE_FILE = "stack.json"


class ServiceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="mosquitto, redis, bridge or http.")
    pid: int = Field(gt=0)
    port: int = Field(ge=0)
    argv: list[str] = Field(description="The exact command line, checked against /proc before signalling.")
    log: str = Field(description="Log file of the service.")


class StackState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    host: str
    started_at: float
    services: list[ServiceRecord] = Field(default_factory=list)
    urls: dict[str, str] = Field(default_factory=dict, description="web, api, mqtt, redis.")
    settings: dict[str, Any] | None = Field(
        default=None,
        description="The StackConfig it was started with (StackConfig.recorded_settings), so a second `up` with "
        "other settings can say what differs. None in files written before it was recorded.",
    )

    def service(self, name: str) -> ServiceRecord | None:
        return next((s for s in self.services if s.name == name), None)


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> StackState | None:
    path = state_path(state_dir)
    if not path.exists():
        return None
    try:
        return StackState.model_validate_json(path.read_text())
    except ValueError:
        # A torn or hand-edited file must not block a fresh `up`; it is reported and replaced.
        return None


def write_state(state_dir: Path, state: StackState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    os.replace(tmp, state_path(state_dir))


def remove_state(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)


def proc_cmdline(pid: int) -> list[str] | None:
    """The command line as the process shows it now (redis-server rewrites its own to ``host:port``)."""
    return _proc_cmdline(pid)


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 follows the parenthesised command name, which may itself contain spaces or ')'.
    return stat[stat.rfind(")") + 2 :].startswith(("Z", "X"))


def is_same_process(record: ServiceRecord) -> bool:
    """True when ``record.pid`` is alive and still runs the command ``up`` started (not a reused pid)."""
    cmdline = _proc_cmdline(record.pid)
    return cmdline == record.argv and not _is_zombie(record.pid)


def stop_service(record: ServiceRecord, timeout: float = 5.0) -> str:
    """SIGTERM, then SIGKILL after ``timeout``; returns what happened, for the ``down`` report."""
    if not is_same_process(record):
        return "not running"
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_same_process(record):
            return "stopped"
        time.sleep(0.05)
    if is_same_process(record):
        os.kill(record.pid, signal.SIGKILL)
        for _ in range(100):
            if not is_same_process(record):
                break
            time.sleep(0.05)
        return "killed"
    return "stopped"


def running_services(state: StackState) -> dict[str, bool]:
    return {s.name: is_same_process(s) for s in state.services}


def describe(state: StackState) -> dict[str, Any]:
    return {"started_at": state.started_at, "urls": state.urls, "services": running_services(state)}
