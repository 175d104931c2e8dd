"""No camera attached: `simulate --webcam N` and `make demo WEBCAM=N` stop at once with one line that says what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def absent_camera() -> int:
    """The first /dev/videoN that does not exist on this machine (0 on a CI runner)."""
    return next(n for n in range(64) if not Path(f"/dev/video{n}").exists())


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _assert_one_line_with_the_fix(stderr: str, index: int) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr  # no OpenCV "[ WARN:0@...] VIDEOIO(V4L2)" lines, no retries
    assert f"cannot open camera /dev/video{index}" in lines[0]
    assert "ls /dev/video*" in lines[0] and "`make demo` plays the sample video" in lines[0]


def test_simulate_with_no_camera_stops_with_the_fix(absent_camera: int, tiny_model: Path, tmp_path: Path) -> None:
    result = _run(
        "-m", "simulator", "simulate", "--webcam", str(absent_camera), "--model", str(tiny_model), cwd=tmp_path
    )
    assert result.returncode == 2
    _assert_one_line_with_the_fix(result.stderr, absent_camera)


def test_demo_with_no_camera_stops_before_starting_anything(absent_camera: int, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = _run("-m", "simulator.demo", "--webcam", str(absent_camera), "--state", str(state), cwd=REPO_ROOT)
    assert result.returncode == 2
    _assert_one_line_with_the_fix(result.stderr, absent_camera)
    assert result.stdout == ""  # no step ran: no export, no sample data, no stack
    assert not (state / "stack").exists()
