"""`visual-search stack up|status|down` as a user runs it: separate processes, detached services, stack.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from simulator.stack.state import is_same_process, read_state
from tests.simulator.conftest import TinyCatalog


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "stack", *args], capture_output=True, text=True, timeout=timeout
    )


def test_up_is_idempotent_and_down_stops_exactly_what_up_started(tiny_catalog: TinyCatalog, tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    up_args = ["up", "--state-dir", str(state_dir), "--index-dir", str(tiny_catalog.index_dir)]
    up_args += [
        "--catalog-dir",
        str(tiny_catalog.images_dir),
        "--mqtt-port",
        "0",
        "--redis-port",
        "0",
        "--http-port",
        "0",
    ]
    first = cli(*up_args)
    try:
        assert first.returncode == 0, first.stderr
        assert "stack started" in first.stdout and "mosquitto_sub" in first.stdout
        state = read_state(state_dir)
        assert state is not None
        assert [s.name for s in state.services] == ["mosquitto", "redis", "bridge", "http"]
        assert all(is_same_process(s) for s in state.services)

        second = cli(*up_args)
        assert second.returncode == 0 and "already running" in second.stdout
        assert read_state(state_dir) == state  # nothing new started

        status = cli("status", "--state-dir", str(state_dir))
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True

        web = state.urls["web"]
        with urllib.request.urlopen(f"{web}api/health", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{web}api/devices/cam-9/matches/latest", timeout=5) as resp:
            assert json.loads(resp.read()) == {"device_id": "cam-9", "record": None}  # "no matches yet"
        with urllib.request.urlopen(web, timeout=5) as resp:
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        with urllib.request.urlopen(f"{web}catalog/item-a.png", timeout=5) as resp:
            assert resp.read()[:4] == b"\x89PNG"
    finally:
        down = cli("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    for service in state.services:
        assert not is_same_process(service), f"{service.name} still running"
        assert f"{service.name}" in down.stdout
    assert "not running" not in down.stdout  # each one was found and stopped
    assert read_state(state_dir) is None
    assert cli("status", "--state-dir", str(state_dir)).returncode == 1
    assert "no stack recorded" in cli("down", "--state-dir", str(state_dir)).stdout


def test_bad_config_stops_up_naming_the_key(tmp_path: Path) -> None:
    result = cli("up", "--state-dir", str(tmp_path / "s"), "--index-dir", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "index_dir" in result.stderr and "no catalog index" in result.stderr
    assert not (tmp_path / "s" / "stack.json").exists()
    assert os.listdir(tmp_path) == []  # nothing started, nothing written
