"""Offline installs: the device pins as wheels, one ``wheelhouse-linux-<machine>.zip`` artifact per platform.

A core without access to a package index installs from it (``device_install`` passes ``--no-index
--find-links``). pip picks the wheels that match the device's Python, so one wheelhouse holds the wheels of
every Python the device OSes ship (3.10 to 3.12) for the runtimes asked for. ``pip download`` with
``--python-version``/``--platform`` fetches wheels for another interpreter and machine without installing;
``--platform`` matches tags exactly, so every manylinux tag up to the oldest glibc we support is listed. pip
evaluates environment markers for the interpreter it runs on, not for ``--python-version``, so the pins are
flattened for each target here (:func:`pinned`) and downloaded with ``--no-deps`` (the pins are complete:
tests/edge_component/test_device_pins.py checks every pinned wheel's dependencies for every target).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from model.contracts.errors import VisualSearchError

DEVICE_PYTHONS = ("3.10", "3.11", "3.12")
MACHINES = ("x86_64", "aarch64")
OLDEST_GLIBC_MINOR = 35
"""glibc 2.35: Ubuntu 22.04 and JetPack 6, the oldest device OS we support."""
RUNTIMES_BY_MACHINE = {"x86_64": ("cpu", "openvino", "cuda"), "aarch64": ("cpu", "openvino")}
"""Which requirement files exist as PyPI wheels per machine (jetson uses JetPack; cuda wheels are x86_64)."""


class WheelhouseError(VisualSearchError, RuntimeError):
    pass


def platform_tags(machine: str, glibc_minor: int = OLDEST_GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a device with glibc 2.``glibc_minor`` on ``machine`` accepts (pip takes them as given)."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def target_args(python: str, machine: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in platform_tags(machine):
        args += ["--platform", tag]
    return args


def marker_env(python: str, machine: str) -> dict[str, str]:
    """The environment markers of a CPython ``python`` on Linux ``machine``."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def pinned(path: Path, python: str, machine: str) -> dict[str, str]:
    """name → version of every requirement in ``path`` (and the files it includes) that applies to the target."""
    env = marker_env(python, machine)
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            out.update(pinned(path.parent / line[3:].strip(), python, machine))
            continue
        requirement = Requirement(line)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate(env):
            (spec,) = requirement.specifier
            out[canonicalize_name(requirement.name)] = spec.version
    return out


def wheel_name(machine: str) -> str:
    return f"wheelhouse-linux-{machine}"


def build_wheelhouse(
    requirements_dir: Path,
    runtimes: list[str],
    machine: str,
    out_dir: Path,
    pythons: Sequence[str] = DEVICE_PYTHONS,
) -> Path:
    """Download the wheels of ``runtimes`` for ``pythons`` (default: every device Python) into ``out_dir/<name>.zip``."""
    unknown = [r for r in runtimes if r not in RUNTIMES_BY_MACHINE[machine]]
    if unknown:
        raise WheelhouseError(f"no {machine} wheels for runtime(s) {', '.join(unknown)}")
    foreign = [p for p in pythons if p not in DEVICE_PYTHONS]
    if foreign:
        raise WheelhouseError(
            f"--wheelhouse-pythons: {', '.join(foreign)} not among the pinned {', '.join(DEVICE_PYTHONS)}"
        )
    staging = out_dir / f"{wheel_name(machine)}.d"
    staging.mkdir(parents=True, exist_ok=True)
    for runtime in runtimes:
        for python in pythons:
            _download(pinned(requirements_dir / f"{runtime}.txt", python, machine), python, machine, staging)
    archive = out_dir / f"{wheel_name(machine)}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # wheels are zips already
        for wheel in sorted(staging.glob("*.whl")):
            zf.write(wheel, wheel.name)
    return archive


def _download(pins: dict[str, str], python: str, machine: str, into: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as flat:
        flat.write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        flat.flush()
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        command += [*target_args(python, machine), "--no-deps", "-d", str(into), "-r", flat.name]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise WheelhouseError(f"pip download for Python {python} on {machine}:\n{result.stderr[-2000:]}")
