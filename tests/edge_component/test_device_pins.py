"""The device pins install on every Python the device OSes ship, on both machines, with nothing left unpinned.

Each runtime's requirements file is resolved the way the device's pip would, for another interpreter and
machine: ``pip install --dry-run --ignore-installed --only-binary=:all: --python-version X --platform TAG...
--report`` reads wheel metadata from the index (PEP 658) and downloads no wheels. pip evaluates environment
markers for the interpreter it runs on, not for ``--python-version``, so the test applies the pins' markers for
the target itself, and checks every resolved package's own ``Requires-Dist`` under the target's markers against
the pins (a dependency only Python 3.10 needs would otherwise go unpinned, and be missing from a wheelhouse).
openvino.txt includes cpu.txt and common.txt, so resolving it covers those; cuda.txt exists for x86_64 only;
jetson.txt is common.txt on top of JetPack's own packages. Needs the package index: skipped, with the reason,
only when it cannot be reached.

Where the index serves no PEP 658 metadata (the index copy on the development machine did not), pip would
download every wheel (GBs for cuda): ``--use-feature=fast-deps`` makes it read each wheel's METADATA with HTTP
range requests instead (dropped, and whole wheels downloaded, on a pip without that feature). A passing
resolution is remembered in ``.cache/device-pins/`` under the hash of the pins, the index and pip's version,
so the same pins are not resolved again until one of those changes (``EVS_PINS_RECHECK=1`` forces it).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edge_component.packaging.build import ROOT
from edge_component.packaging.wheelhouse import DEVICE_PYTHONS, marker_env, pinned, target_args

PINS = ROOT / "requirements/device"
TARGETS = [
    (runtime, python, machine)
    for python in DEVICE_PYTHONS
    for machine, runtimes in {"x86_64": ("openvino", "cuda"), "aarch64": ("openvino",)}.items()
    for runtime in runtimes
]


def index_url() -> str:
    """The index a device would use: the one pip is configured with here (a mirror), else PyPI."""
    for key in ("global.index-url", "install.index-url"):
        found = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    return "https://pypi.org/simple"


def _index_problem(index: str) -> str | None:
    url = index.rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return None
    except OSError as exc:
        return f"package index {url} unreachable ({exc}): device pins not resolved"


def _resolve(pins: dict[str, str], python: str, machine: str, index: str, folder: Path) -> dict[str, str] | str:
    name = f"{python}-{machine}-{abs(hash(tuple(sorted(pins.items()))))}"
    flat = folder / f"{name}.txt"
    flat.write_text("".join(f"{package}=={version}\n" for package, version in sorted(pins.items())))
    report = folder / f"{name}.json"
    # --isolated: only this index (no local mirrors or constraints from this machine's pip configuration)
    command = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--index-url", index, *target_args(python, machine), "--report", str(report), "-r", str(flat)]
    result = subprocess.run([*command, "--use-feature=fast-deps"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "fast-deps" in result.stderr and "invalid choice" in result.stderr:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        return result.stderr[-1500:]
    items = json.loads(report.read_text())["install"]
    env = marker_env(python, machine)
    missing = [
        f"{item['metadata']['name']} needs {dep}"
        for item in items
        for dep in map(Requirement, item["metadata"].get("requires_dist") or [])
        if (dep.marker is None or dep.marker.evaluate(env)) and canonicalize_name(dep.name) not in pins
    ]
    if missing:
        return "dependencies not pinned for this target: " + "; ".join(missing)
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


VERIFIED = ROOT / ".cache" / "device-pins"


def _verified_marker(index: str) -> Path:
    pip_version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(f"{index}\n{pip_version}\n{TARGETS}".encode())
    for path in sorted(PINS.glob("*.txt")):
        digest.update(path.name.encode() + path.read_bytes())
    return VERIFIED / f"{digest.hexdigest()[:20]}.json"


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], dict[str, str] | str]:
    """Every target resolved once, in parallel (the work is waiting on the index), or the remembered pass."""
    index = index_url()
    marker = _verified_marker(index)
    if marker.exists() and not os.environ.get("EVS_PINS_RECHECK"):
        remembered = json.loads(marker.read_text())
        return {tuple(item["target"]): item["resolved"] for item in remembered}  # type: ignore[misc]
    problem = _index_problem(index)
    if problem:
        pytest.skip(problem)
    folder = tmp_path_factory.mktemp("pins")

    def one(target: tuple[str, str, str]) -> dict[str, str] | str:
        runtime, python, machine = target
        return _resolve(pinned(PINS / f"{runtime}.txt", python, machine), python, machine, index, folder)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcome = dict(zip(TARGETS, pool.map(one, TARGETS), strict=True))
    if all(isinstance(v, dict) for v in outcome.values()):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps([{"target": list(k), "resolved": v} for k, v in outcome.items()], indent=1))
    return outcome


@pytest.mark.parametrize(("runtime", "python", "machine"), TARGETS)
def test_runtime_pins_resolve_completely(resolved: dict, runtime: str, python: str, machine: str) -> None:
    outcome = resolved[(runtime, python, machine)]
    assert isinstance(outcome, dict), f"{runtime}.txt does not install on Python {python} {machine}:\n{outcome}"
    assert outcome == pinned(PINS / f"{runtime}.txt", python, machine)  # nothing unpinned, every pin as written


def test_every_device_requirement_is_an_exact_pin() -> None:
    for path in PINS.glob("*.txt"):
        for raw in path.read_text().splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith(("#", "-r ")):
                specifiers = list(Requirement(line).specifier)
                assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}: {line}"
