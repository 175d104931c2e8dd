"""The MXNet converter's own virtual environment, created on demand.

mxnet 1.9.1 needs ``numpy==1.23.5`` and ``onnx==1.15.0``, which cannot live beside the main environment's
numpy 2 / onnx 1.2x, so conversion runs in ``.venv-mxnet`` (``VISUAL_SEARCH_MXNET_VENV`` overrides where).
The main environment never imports mxnet. Creation is idempotent (a stamp records the requirements and
interpreter it was built from) and concurrent-safe (an exclusive lock file beside the venv).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from model.contracts.errors import VisualSearchError
from model.logs import log_event

log = logging.getLogger(__name__)

REQUIREMENTS = Path(__file__).with_name("requirements-mxnet.txt")
VENV_ENV = "VISUAL_SEARCH_MXNET_VENV"
PYTHON_ENV = "VISUAL_SEARCH_MXNET_PYTHON"
STAMP_NAME = ".visual-search-mxnet.json"
SUPPORTED_PYTHONS = ((3, 9), (3, 10), (3, 11))
"""numpy 1.23.5 ships wheels up to CPython 3.11; mxnet 1.9.1's wheel is version-independent."""

PIP_TIMEOUT_S = 1800


class MxnetEnvError(VisualSearchError, RuntimeError):
    """The MXNet environment could not be created or does not work."""


def default_venv_dir() -> Path:
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists():
        return repo / ".venv-mxnet"
    # Installed as a wheel: no checkout to put it in.
    return Path.home() / ".cache" / "visual-search" / "venv-mxnet"


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def pick_python() -> str:
    """An interpreter mxnet 1.9.1 + numpy 1.23.5 install on: ``$VISUAL_SEARCH_MXNET_PYTHON``, this one, or 3.11..3.9."""
    override = os.environ.get(PYTHON_ENV)
    if override:
        version = _python_version(override)
        if version not in SUPPORTED_PYTHONS:
            raise MxnetEnvError(
                f"{PYTHON_ENV}={override}: needs CPython 3.9–3.11 for mxnet 1.9.1 / numpy 1.23.5, got {version}"
            )
        return override
    if sys.version_info[:2] in SUPPORTED_PYTHONS:
        return sys.executable
    for name in ("python3.11", "python3.10", "python3.9"):
        found = shutil.which(name)
        if found and _python_version(found) in SUPPORTED_PYTHONS:
            return found
    raise MxnetEnvError(
        f"no CPython 3.9–3.11 found for the MXNet environment (this is {sys.version.split()[0]});"
        f" install one and point {PYTHON_ENV} at it"
    )


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def _wanted_stamp(python: str, requirements: Path) -> dict[str, str]:
    return {
        "requirements_sha256": hashlib.sha256(requirements.read_bytes()).hexdigest(),
        "python_version": ".".join(str(p) for p in _python_version(python) or ()),
    }


def _is_ready(venv: Path, wanted: dict[str, str]) -> bool:
    stamp = _read_stamp(venv)
    return stamp is not None and _python_in(venv).exists() and all(stamp.get(k) == v for k, v in wanted.items())


def _read_stamp(venv: Path) -> dict[str, str] | None:
    try:
        data = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _locked(venv: Path) -> Iterator[None]:
    # Beside the venv, not inside (the venv is deleted on rebuild), in a folder so `.venv-*/` in .gitignore covers it.
    lock_dir = venv.parent / f"{venv.name}.lock"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock_path = lock_dir / "lock"
    with open(lock_path, "a+") as handle:
        started = time.monotonic()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log_event(log, "mxnet_env_waiting_for_lock", venv=str(venv))
            fcntl.flock(handle, fcntl.LOCK_EX)
            log_event(log, "mxnet_env_lock_acquired", waited_s=round(time.monotonic() - started, 1))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, timeout: float) -> None:
    # Output goes to the caller's terminal, so pip's own download progress bars show on the one-off install.
    try:
        result = subprocess.run(cmd, timeout=timeout, stdout=sys.stderr, stderr=subprocess.STDOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MxnetEnvError(f"{what} took longer than {timeout:.0f} s: {' '.join(cmd)}") from exc
    except OSError as exc:
        raise MxnetEnvError(f"{what} could not start ({exc}): {' '.join(cmd)}") from exc
    if result.returncode != 0:
        raise MxnetEnvError(f"{what} failed with exit code {result.returncode}: {' '.join(cmd)} (see output above)")


def _verify(python: Path, modules: tuple[str, ...]) -> dict[str, str]:
    probe = (
        "import importlib, json; print(json.dumps({m: getattr(importlib.import_module(m), '__version__', '?')"
        f" for m in {list(modules)!r}}}))"
    )
    try:
        out = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MxnetEnvError(f"environment {python} does not run: {exc}") from exc
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise MxnetEnvError(f"environment {python} cannot import {', '.join(modules)}: {tail}")
    versions: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return versions


def ensure_mxnet_env(venv: Path | None = None) -> Path:
    """The interpreter of a working MXNet environment, creating it first if needed (one-off, ~100 MB download)."""
    return ensure_venv(venv or default_venv_dir(), REQUIREMENTS, ("mxnet", "numpy", "onnx"))


def ensure_venv(venv: Path, requirements: Path, probe_modules: tuple[str, ...]) -> Path:
    """Create ``venv`` from ``requirements`` unless a stamp says it already was; return its interpreter.

    Safe to call from several processes at once: one builds under the lock, the others wait and reuse it.
    """
    venv = venv.resolve()
    python = pick_python()
    wanted = _wanted_stamp(python, requirements)
    if _is_ready(venv, wanted):
        return _python_in(venv)
    with _locked(venv):
        # Someone may have finished while we waited for the lock.
        if _is_ready(venv, wanted):
            return _python_in(venv)
        started = time.monotonic()
        log_event(log, "mxnet_env_creating", venv=str(venv), python=str(python))
        if venv.exists():
            # A half-built or outdated environment: rebuild rather than patch it.
            shutil.rmtree(venv)
        if importlib.util.find_spec("pip") is not None:
            # Driving the new venv with this interpreter's pip (--python) skips ensurepip: 0.3 s instead of ~13 s.
            _run([python, "-m", "venv", "--without-pip", str(venv)], "creating the virtual environment", 300)
            pip = [sys.executable, "-m", "pip", "--python", str(_python_in(venv))]
        else:
            _run([python, "-m", "venv", str(venv)], "creating the virtual environment", 300)
            pip = [str(_python_in(venv)), "-m", "pip"]
        _run(
            [*pip, "install", "--disable-pip-version-check", "-r", str(requirements)],
            f"installing {requirements.name}",
            PIP_TIMEOUT_S,
        )
        versions = _verify(_python_in(venv), probe_modules)
        stamp = {
            **wanted,
            "created_s": f"{time.monotonic() - started:.1f}",
            **{f"{k}_version": v for k, v in versions.items()},
        }
        tmp = venv / (STAMP_NAME + ".tmp")
        tmp.write_text(json.dumps(stamp, indent=2) + "\n")
        tmp.replace(venv / STAMP_NAME)
        log_event(
            log, "mxnet_env_ready", venv=str(venv), seconds=round(time.monotonic() - started, 1), versions=versions
        )
    return _python_in(venv)
