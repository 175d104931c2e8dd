"""stack.json identity checks: `down` must stop exactly the processes `up` started, never a reused pid."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from simulator.stack.state import (
    ServiceRecord,
    StackState,
    is_same_process,
    proc_cmdline,
    read_state,
    stop_service,
    write_state,
)
from tests.wait import wait_for


def _started(argv: list[str]) -> subprocess.Popen[bytes]:
    """Popen, then wait for the exec: between fork and exec /proc still shows the parent's command line."""
    proc = subprocess.Popen(argv)
    wait_for(lambda: proc_cmdline(proc.pid) == argv, 10, "the exec", interval=0.01)
    return proc


def _sleeper() -> tuple[subprocess.Popen[bytes], list[str]]:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    return _started(argv), argv


def test_state_round_trip_and_torn_file(tmp_path: Path) -> None:
    state = StackState(host="127.0.0.1", started_at=time.time(), urls={"web": "http://127.0.0.1:1/"})
    state.services.append(ServiceRecord(name="redis", pid=123, port=6379, argv=["redis-server"], log="x.log"))
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    (tmp_path / "stack.json").write_text('{"version": 1, "host": ')
    assert read_state(tmp_path) is None  # a torn file must not block a fresh `up`


def test_stop_only_the_recorded_process(tmp_path: Path) -> None:
    proc, argv = _sleeper()
    try:
        record = ServiceRecord(name="svc", pid=proc.pid, port=0, argv=argv, log="x")
        impostor = record.model_copy(update={"argv": ["/usr/sbin/mosquitto", "-c", "other.conf"]})
        assert is_same_process(record)
        # Same pid, other command line: a reused pid. `down` must leave it alone.
        assert not is_same_process(impostor)
        assert stop_service(impostor) == "not running"
        assert proc.poll() is None
        assert stop_service(record) == "stopped"
        proc.wait(5)
        assert not is_same_process(record)
        assert stop_service(record) == "not running"
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_ignoring_process_is_killed() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    argv = [sys.executable, "-c", code]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # the handler is installed
        record = ServiceRecord(name="stubborn", pid=proc.pid, port=0, argv=argv, log="x")
        assert stop_service(record, timeout=0.5) == "killed"
    finally:
        proc.kill()
        proc.wait()
