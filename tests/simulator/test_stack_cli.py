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
    assert "stack up: --index-dir: " in result.stderr and "no catalog index" in result.stderr
    assert not (tmp_path / "s" / "stack.json").exists()
    assert os.listdir(tmp_path) == []  # nothing started, nothing written


def _up_args(state_dir: Path, catalog: TinyCatalog, *extra: str) -> list[str]:
    return ["up", "--state-dir", str(state_dir), "--index-dir", str(catalog.index_dir), *extra]


FREE = ("--mqtt-port", "0", "--redis-port", "0", "--http-port", "0")


def test_a_second_up_with_other_settings_names_them_and_restart_applies_them(
    tiny_catalog: TinyCatalog, tmp_path: Path
) -> None:
    state_dir = tmp_path / "stack"
    try:
        assert cli(*_up_args(state_dir, tiny_catalog, *FREE)).returncode == 0
        first = read_state(state_dir)
        assert first is not None and first.settings is not None and first.settings["min_score"] is None

        other = cli(*_up_args(state_dir, tiny_catalog, *FREE, "--min-score", "0.3", "--top-k", "3"))
        assert other.returncode == 1
        assert "--min-score None running, 0.3 asked" in other.stderr and "--top-k 5 running, 3 asked" in other.stderr
        assert "stack up --restart" in other.stderr and "stack down" in other.stderr
        assert read_state(state_dir) == first  # nothing restarted behind the user's back

        same = cli(*_up_args(state_dir, tiny_catalog, *FREE))
        assert same.returncode == 0 and "already running" in same.stdout

        restarted = cli(*_up_args(state_dir, tiny_catalog, *FREE, "--min-score", "0.3", "--top-k", "3", "--restart"))
        assert restarted.returncode == 0 and "stack started" in restarted.stdout
        second = read_state(state_dir)
        assert second is not None and second.settings is not None
        assert (second.settings["min_score"], second.settings["top_k"]) == (0.3, 3)
        assert all(is_same_process(s) for s in second.services)
        assert not any(is_same_process(s) for s in first.services)  # the old processes were stopped
    finally:
        cli("down", "--state-dir", str(state_dir))


def test_a_photo_model_that_cannot_search_the_index_stops_up_naming_the_flag(
    tiny_catalog: TinyCatalog, tmp_path: Path
) -> None:
    from model.testing import build_tiny_model

    other = build_tiny_model(tmp_path / "other" / "tiny.onnx", seed=7)  # same shape, other weights: other id
    state_dir = tmp_path / "stack"
    result = cli(*_up_args(state_dir, tiny_catalog, *FREE, "--photo-model", str(other)))
    assert result.returncode == 2
    assert result.stderr.startswith("stack up: --photo-model: ")
    assert "cannot search the index" in result.stderr and tiny_catalog.model_id in result.stderr
    assert not (state_dir / "stack.json").exists()


def test_down_and_up_right_after_live_clients_come_back_on_the_same_ports(
    tiny_catalog: TinyCatalog, tmp_path: Path
) -> None:
    """The servers close their clients' connections when stopped, leaving the ports in TIME_WAIT for a minute;
    `up` must probe the way they bind (SO_REUSEADDR) and take the same ports again."""
    import http.client

    import paho.mqtt.client as mqtt
    import redis
    from paho.mqtt.enums import CallbackAPIVersion

    from simulator.stack.processes import free_port
    from tests.simulator.test_ports import plain_bind_fails, time_wait_on

    state_dir = tmp_path / "stack"
    ports = {"--mqtt-port": free_port(), "--redis-port": free_port(), "--http-port": free_port()}
    fixed = [str(part) for flag, port in ports.items() for part in (flag, port)]
    up = _up_args(state_dir, tiny_catalog, *fixed)
    assert cli(*up).returncode == 0
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="live-subscriber")
    subscriber.connect("127.0.0.1", ports["--mqtt-port"])
    subscriber.loop_start()
    store = redis.Redis(port=ports["--redis-port"])
    web = http.client.HTTPConnection("127.0.0.1", ports["--http-port"], timeout=5)
    try:
        assert store.ping()
        web.request("GET", "/api/health")
        assert web.getresponse().read()  # the keep-alive connection stays open
        assert cli("down", "--state-dir", str(state_dir)).returncode == 0
        waiting = [port for port in ports.values() if time_wait_on(port)]
        assert waiting, "no server-side connection in TIME_WAIT: the scenario did not happen"
        assert all(plain_bind_fails(port) for port in waiting)

        again = cli(*up)
        assert again.returncode == 0, again.stderr
        state = read_state(state_dir)
        assert state is not None
        by_name = {s.name: s.port for s in state.services}
        assert [by_name["mosquitto"], by_name["redis"], by_name["http"]] == list(ports.values())
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
        web.close()
        cli("down", "--state-dir", str(state_dir))
