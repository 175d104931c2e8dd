"""Bring the local stack up and down: mosquitto, redis-server, the rule bridge, the API + web app server.

``up`` starts each service detached (its own session, so it outlives the command and a Ctrl-C in the
terminal), waits until each one is ready, and records it in ``stack.json`` as soon as it runs, so a
failure half-way leaves nothing that ``down`` cannot find. A second ``up`` finds a running stack and
returns it instead of starting another; when it was asked for other settings it says which ones differ
(:class:`SettingsDiffer`) instead of silently keeping the old ones, and ``restart=True`` applies them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from model.contracts.errors import VisualSearchError
from model.logs import log_event
from simulator.stack.auth import StackAuth, is_loopback, prepare_auth
from simulator.stack.config import StackConfig
from simulator.stack.processes import (
    ManagedProcess,
    MosquittoProcess,
    PythonServiceProcess,
    RedisProcess,
    ServiceError,
    free_port,
    port_holder,
    port_in_use,
)
from simulator.stack.state import (
    ServiceRecord,
    StackState,
    is_same_process,
    proc_cmdline,
    read_state,
    remove_state,
    stop_service,
    write_state,
)

log = logging.getLogger(__name__)


class StackError(VisualSearchError, RuntimeError):
    """The stack could not start (a port in use, a service that never became ready)."""


class SettingsDiffer(StackError):
    """A stack is running in this state folder with other settings than the ones asked for."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(
            "a stack is already running here with other settings: "
            + "; ".join(differences)
            + ". Apply them with `visual-search stack up --restart ...` (or `visual-search stack down` first)"
        )


def find_running(state_dir: Path) -> StackState | None:
    """The stack recorded in ``state_dir`` if every one of its services is still the process ``up`` started."""
    state = read_state(state_dir)
    if state is None or not state.services:
        return None
    return state if all(is_same_process(s) for s in state.services) else None


def _check_port_free(host: str, port: int, key: str) -> None:
    if port == 0:
        return
    error = port_in_use(host, port)
    if error is not None:
        holder = port_holder(port)
        raise StackError(
            f"{key}: {host}:{port} is already in use{f' by {holder}' if holder else ''} ({error.strerror});"
            f" stop that process, or pass --{key.replace('_', '-')} with another port (0: any free port)"
        )


PORT_SERVICES = {"mqtt_port": "mosquitto", "redis_port": "redis", "http_port": "http"}


def settings_differences(state: StackState, config: StackConfig) -> list[str]:
    """What ``config`` asks for that the running ``state`` does not have, as ``--flag running → asked``."""
    running: dict[str, Any] = state.settings or {}
    asked = config.recorded_settings()
    out = []
    for key, value in asked.items():
        if key.endswith("_port"):
            service = state.service(PORT_SERVICES[key])
            have = service.port if service is not None else None
            if value and value != have:
                out.append(f"--{key.replace('_', '-')} {have} running, {value} asked")
        elif key in running and running[key] != value:
            out.append(f"--{key.replace('_', '-')} {running[key]} running, {value} asked")
    return out


def _record(proc: ManagedProcess) -> ServiceRecord:
    assert proc.process is not None
    # Read back after the service is ready: redis-server retitles itself, so the argv we passed would never
    # match /proc again and `down` would leave it running.
    argv = proc_cmdline(proc.process.pid) or proc.command()
    return ServiceRecord(name=proc.name, pid=proc.process.pid, port=proc.port, argv=argv, log=str(proc.log_path))


def stack_up(config: StackConfig, restart: bool = False) -> tuple[StackState, bool]:
    """Start the stack (or find the running one). Returns ``(state, started_now)``.

    A running stack with other settings raises :class:`SettingsDiffer` naming them; ``restart`` stops it and
    starts one with the new settings.
    """
    running = _running_with_these_settings(config, restart)
    if running is not None:
        return running, False
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    state = StackState(host=config.host, started_at=time.time(), settings=config.recorded_settings())
    # Beyond loopback, the LAN can reach the broker and Redis: both then require passwords (simulator.stack.auth).
    auth = None if is_loopback(config.host) else prepare_auth(state_dir)
    launcher = _Launcher(state, state_dir, config.ready_timeout_s)
    try:
        broker, redis, http_port = _launch_services(config, launcher, auth)
    except BaseException:
        launcher.stop_all()
        remove_state(state_dir)
        raise
    state.urls = _urls(config.host, http_port, broker, redis, auth)
    write_state(state_dir, state)
    return state, True


def _running_with_these_settings(config: StackConfig, restart: bool) -> StackState | None:
    """The running stack when its settings are these; else clear the way: a stack with other settings raises
    :class:`SettingsDiffer` (or, with ``restart``, is stopped), leftovers of a dead one are stopped, and every
    port asked for must be free."""
    running = find_running(config.state_dir)
    if running is not None:
        differences = settings_differences(running, config)
        if not differences:
            return running
        if not restart:
            raise SettingsDiffer(differences)
        log_event(log, "stack_restarting", differences=differences)
    if read_state(config.state_dir) is not None:
        # Part of an earlier stack died: stop the rest of it so ports and pids are clean.
        stack_down(config.state_dir)
    for key in ("mqtt_port", "redis_port", "http_port"):
        _check_port_free(config.host, getattr(config, key), key)
    return None


class _Launcher:
    """Starts services one by one, recording each in ``stack.json`` as soon as it has a pid."""

    def __init__(self, state: StackState, state_dir: Path, timeout_s: float) -> None:
        self.state, self.state_dir, self.timeout_s = state, state_dir, timeout_s
        self.started: list[ManagedProcess] = []

    def launch(self, proc: ManagedProcess) -> ManagedProcess:
        try:
            proc.start(timeout=self.timeout_s)
        except ServiceError as exc:
            raise StackError(str(exc)) from exc
        finally:
            if proc.process is not None:
                self.started.append(proc)
                self.state.services.append(_record(proc))
                write_state(self.state_dir, self.state)
        log_event(log, "service_ready", service=proc.name, port=proc.port, pid=proc.pid)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def _launch_services(
    config: StackConfig, launcher: _Launcher, auth: StackAuth | None
) -> tuple[MosquittoProcess, RedisProcess, int]:
    """mosquitto, redis-server, the rule bridge and the HTTP server, in that order; returns the HTTP port."""
    host, state_dir = config.host, config.state_dir
    broker = MosquittoProcess(
        workdir=state_dir / "mosquitto",
        host=host,
        port=config.mqtt_port,
        persistence=True,
        password_file=auth.password_file if auth else None,
        acl_file=auth.acl_file if auth else None,
    )
    launcher.launch(broker)
    redis = RedisProcess(
        workdir=state_dir / "redis",
        host=host,
        port=config.redis_port,
        password=auth.redis_password if auth else None,
    )
    launcher.launch(redis)
    env = config.cloud_env(broker.port, redis.port) | (auth.service_env(redis.url) if auth else {})
    ready = state_dir / "bridge" / "ready"
    bridge_args = ["--mqtt-host", host, "--mqtt-port", str(broker.port), "--ready-file", str(ready)]
    launcher.launch(
        PythonServiceProcess(
            name="bridge",
            workdir=state_dir / "bridge",
            host=host,
            module="simulator.stack.bridge",
            args=bridge_args,
            ready_file=ready,
            env=env,
        )
    )
    http_port = config.http_port or free_port(host)
    http_args = ["--host", host, "--port", str(http_port)]
    if config.catalog_dir is not None:
        http_args += ["--catalog-dir", str(config.catalog_dir)]
    launcher.launch(
        PythonServiceProcess(
            name="http",
            workdir=state_dir / "http",
            host=host,
            port=http_port,
            module="simulator.stack.http_server",
            args=http_args,
            health_path="/api/health",
            env=env,
        )
    )
    return broker, redis, http_port


def _urls(
    host: str, http_port: int, broker: MosquittoProcess, redis: RedisProcess, auth: StackAuth | None
) -> dict[str, str]:
    urls = {
        "web": f"http://{host}:{http_port}/",
        "api": f"http://{host}:{http_port}/api",
        "mqtt": f"mqtt://{host}:{broker.port}",
        "redis": f"redis://{host}:{redis.port}/0",  # never the password
    }
    if auth is not None:
        urls["credentials"] = f"{auth.credentials_file} (devices: --set publish.mqtt.username=device"
        urls["credentials"] += f" --set publish.mqtt.password_file={auth.device_password_file})"
    return urls


def stack_down(state_dir: Path) -> dict[str, str]:
    """Stop exactly the processes ``up`` recorded (newest first); returns service → what happened."""
    state = read_state(state_dir)
    if state is None:
        return {}
    outcome = {record.name: stop_service(record) for record in reversed(state.services)}
    remove_state(state_dir)
    (state_dir / "bridge" / "ready").unlink(missing_ok=True)
    return outcome
