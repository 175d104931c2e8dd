"""The component's Install step on the device: ``python3 -m edge_component.packaging.device_install``.

Runs with the device's own ``python3`` before anything is installed, so it imports the standard library only
(and ``model.logs``, which is stdlib too). It turns the recipe's ``runtime`` key into a virtualenv:

======== ===================================================== ===========================================
runtime  packages (``requirements/device/<file>.txt``)          where
======== ===================================================== ===========================================
cpu      onnxruntime (CPU)                                     x86_64, aarch64
openvino onnxruntime + OpenVINO (the start-up trial keeps the  x86_64, aarch64
         faster)
cuda     onnxruntime-gpu + CUDA 12/cuDNN wheels                x86_64 with an NVIDIA driver
tensorrt as cuda, plus the system's TensorRT 10 (libnvinfer)   x86_64 with an NVIDIA driver and TensorRT
jetson   venv with ``--system-site-packages``: JetPack's       NVIDIA Jetson (JetPack 6)
         numpy, OpenCV and onnxruntime-gpu/TensorRT
======== ===================================================== ===========================================

``auto`` picks jetson on a Jetson, cuda where an NVIDIA driver is loaded, openvino on other x86_64 machines
(OpenVINO's CPU plugin runs on any x86-64 with SSE4.2; it ran the int8 model in half onnxruntime's time in
``make bench``), and cpu elsewhere. A wheelhouse artifact (``wheelhouse-linux-<machine>/``) makes the install
offline. Install is idempotent: the nucleus runs it again on every start of the component, so an unchanged
plan (same runtime, requirements, Python, wheel source) keeps the existing venv; a changed one rebuilds it.
The result is written to ``install.json`` beside the venv; the component logs it and puts it in its status.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model.contracts.errors import VisualSearchError
from model.logs import log_event, setup_logging

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "cpu", "openvino", "cuda", "tensorrt", "jetson")
REQUIREMENTS = {"cpu": "cpu", "openvino": "openvino", "cuda": "cuda", "tensorrt": "cuda", "jetson": "jetson"}
# What each runtime must import once installed (the check that the venv really holds it).
IMPORTS = {
    "cpu": ["numpy", "cv2", "onnxruntime"],
    "openvino": ["numpy", "cv2", "onnxruntime", "openvino"],
    "cuda": ["numpy", "cv2", "onnxruntime"],
    "tensorrt": ["numpy", "cv2", "onnxruntime"],
    "jetson": ["numpy", "cv2", "onnxruntime"],
}
COMMON_IMPORTS = ["pydantic", "yaml", "paho.mqtt", "awsiot.greengrasscoreipc"]
REPORT_NAME = "install.json"


class InstallError(VisualSearchError, RuntimeError):
    """Install cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Host:
    """What the runtime choice looks at (read by :func:`probe_host`; tests build their own)."""

    machine: str
    python: str
    jetson: str | None = None
    """The Jetson's model or L4T release when this is a Jetson."""
    nvidia_driver: str | None = None
    """The loaded NVIDIA kernel driver's version line (``/proc/driver/nvidia/version``)."""
    tensorrt: bool = False
    """``libnvinfer.so.10`` is on the dynamic linker's path."""
    cpu_vendor: str | None = None


@dataclass(frozen=True)
class Choice:
    runtime: str
    requested: str
    reason: str


@dataclass
class Plan:
    choice: Choice
    requirements: Path
    system_site_packages: bool
    wheelhouse: Path | None
    python: str
    fingerprint: str = field(default="")


def probe_host(root: Path = Path("/")) -> Host:
    def first_line(path: str) -> str | None:
        try:
            text = (root / path).read_text(errors="replace").strip("\x00 \n")
        except OSError:
            return None
        return text.splitlines()[0].strip("\x00 ") if text else None

    model = first_line("proc/device-tree/model")
    jetson = first_line("etc/nv_tegra_release") or (model if model and "jetson" in model.lower() else None)
    try:
        cpuinfo = (root / "proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    vendor = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("vendor_id")), None)
    return Host(
        machine=platform.machine(),
        python=platform.python_version(),
        jetson=jetson,
        nvidia_driver=first_line("proc/driver/nvidia/version"),
        tensorrt=_has_library("libnvinfer.so.10"),
        cpu_vendor=vendor,
    )


def _has_library(name: str) -> bool:
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if Path("/sbin/ldconfig").exists() else None)
    if ldconfig is None:
        return False
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return name in listing


def choose_runtime(requested: str, host: Host) -> Choice:
    """The runtime to install; raises :class:`InstallError` when the requested one cannot run on this host."""
    if requested not in RUNTIMES:
        raise InstallError(f"configuration key 'runtime': {requested!r} is not one of {', '.join(RUNTIMES)}")
    if requested == "auto":
        return _auto(host)
    x86 = host.machine in ("x86_64", "AMD64")
    if requested == "jetson" and not host.jetson:
        raise InstallError("runtime 'jetson' needs an NVIDIA Jetson (no /etc/nv_tegra_release); use 'auto'")
    if requested in ("cuda", "tensorrt"):
        if host.jetson:
            raise InstallError(f"runtime {requested!r}: this is a Jetson, use runtime 'jetson' (JetPack's CUDA)")
        if not x86:
            raise InstallError(f"runtime {requested!r} is built for x86_64; {host.machine} has no onnxruntime-gpu 1.23")
        if not host.nvidia_driver:
            raise InstallError(f"runtime {requested!r} needs the NVIDIA driver (no /proc/driver/nvidia/version)")
    if requested == "tensorrt" and not host.tensorrt:
        raise InstallError(
            "runtime 'tensorrt' needs TensorRT 10 (libnvinfer.so.10 not found by ldconfig): install it from "
            "NVIDIA's apt repository (libnvinfer10) or use runtime 'cuda'"
        )
    return Choice(requested, requested, "set in the configuration")


def _auto(host: Host) -> Choice:
    if host.jetson:
        return Choice("jetson", "auto", f"NVIDIA Jetson ({host.jetson})")
    x86 = host.machine in ("x86_64", "AMD64")
    if host.nvidia_driver and x86:
        return Choice("cuda", "auto", f"NVIDIA driver loaded ({host.nvidia_driver[:80]})")
    if x86:
        return Choice(
            "openvino", "auto", f"x86_64 CPU ({host.cpu_vendor or 'unknown vendor'}): OpenVINO beside onnxruntime"
        )
    return Choice("cpu", "auto", f"{host.machine} without an NVIDIA Jetson/driver: onnxruntime CPU")


def make_plan(choice: Choice, package_dir: Path, artifacts_dir: Path | None, host: Host) -> Plan:
    requirements = package_dir / "requirements" / f"{REQUIREMENTS[choice.runtime]}.txt"
    if not requirements.is_file():
        raise InstallError(f"{requirements} is missing from the component zip")
    wheelhouse = None
    if artifacts_dir is not None:
        candidate = artifacts_dir / f"wheelhouse-linux-{host.machine}"
        wheelhouse = candidate if candidate.is_dir() else None
    plan = Plan(choice, requirements, choice.runtime == "jetson", wheelhouse, host.python)
    digest = hashlib.sha256()
    for path in sorted((package_dir / "requirements").glob("*.txt")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([choice.runtime, host.python, str(wheelhouse), plan.system_site_packages]).encode())
    plan.fingerprint = digest.hexdigest()[:16]
    return plan


def pip_command(plan: Plan, venv_python: Path) -> list[str]:
    command = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    command += ["--progress-bar", "off", "--only-binary=:all:", "-r", str(plan.requirements)]
    if plan.wheelhouse is not None:
        command += ["--no-index", "--find-links", str(plan.wheelhouse)]
    return command


def install(plan: Plan, venv: Path) -> dict[str, object]:
    """Build ``venv`` for ``plan`` unless the one there already matches; returns the install report."""
    report_path = venv.parent / REPORT_NAME
    previous = _read_report(report_path)
    python = venv / "bin" / "python"
    if previous.get("fingerprint") == plan.fingerprint and _runs(python):
        log_event(log, "runtime_already_installed", runtime=plan.choice.runtime, venv=str(venv))
        return previous
    started = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)  # a changed plan starts clean: no packages left from another runtime
    args = [sys.executable, "-m", "venv", *(["--system-site-packages"] if plan.system_site_packages else []), str(venv)]
    _run(args, "creating the venv failed (Debian/Ubuntu: apt-get install python3-venv)")
    _run(pip_command(plan, python), f"pip could not install {plan.requirements.name}")
    found = _check_imports(python, plan.choice.runtime)
    report = {
        **{k: v for k, v in asdict(plan.choice).items()},
        "requirements": plan.requirements.name,
        "source": str(plan.wheelhouse) if plan.wheelhouse else "package index",
        "python": plan.python,
        "fingerprint": plan.fingerprint,
        "install_s": round(time.monotonic() - started, 1),
        **found,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    log_event(log, "runtime_installed", **report)
    return report


def _read_report(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _runs(python: Path) -> bool:
    try:
        return subprocess.run([str(python), "-c", "pass"], timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _run(command: list[str], failure: str) -> None:
    log_event(log, "running", command=" ".join(command))
    result = subprocess.run(command, stdout=sys.stdout, stderr=sys.stdout)
    if result.returncode != 0:
        raise InstallError(f"{failure} (exit {result.returncode}): {' '.join(command)}")


_PROBE = """
import importlib, json, sys
out = {"versions": {}, "missing": []}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        out["missing"].append(f"{name}: {type(exc).__name__}: {exc}")
        continue
    out["versions"][name] = getattr(module, "__version__", "?")
    if name == "onnxruntime":
        out["onnxruntime_providers"] = module.get_available_providers()
    if name == "openvino":
        try:
            out["openvino_devices"] = module.Core().available_devices
        except Exception as exc:
            out["openvino_devices"] = [f"error: {exc}"]
print(json.dumps(out))
"""


def _check_imports(python: Path, runtime: str) -> dict[str, object]:
    modules = [*IMPORTS[runtime], *COMMON_IMPORTS]
    result = subprocess.run([str(python), "-c", _PROBE, *modules], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise InstallError(f"the installed venv cannot run its import check: {result.stderr[-500:]}")
    found: dict[str, object] = json.loads(result.stdout)
    if found["missing"]:
        hint = " (JetPack provides numpy, cv2 and onnxruntime-gpu: see docs/edge.md)" if runtime == "jetson" else ""
        raise InstallError(f"runtime {runtime!r} is not importable after install: {found['missing']}{hint}")
    return found


def installed_runtime(environ: dict[str, str] | None = None) -> dict[str, object] | None:
    """What Install chose (runtime, requested, reason, source, python), for the component's logs and status.

    The recipe's Run step points ``EVS_INSTALL_REPORT`` at the report; None outside Greengrass or before an install.
    """
    path = (os.environ if environ is None else environ).get("EVS_INSTALL_REPORT")
    report = _read_report(Path(path)) if path else {}
    keys = ("runtime", "requested", "reason", "source", "python")
    return {key: report[key] for key in keys if key in report} or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m edge_component.packaging.device_install", description=__doc__)
    parser.add_argument("--runtime", default="auto", help=f"one of {', '.join(RUNTIMES)} (recipe key 'runtime')")
    parser.add_argument("--venv", type=Path, required=True, help="the venv to build ({work:path}/venv)")
    parser.add_argument("--artifacts", type=Path, help="{artifacts:decompressedPath}: an offline wheelhouse lives here")
    args = parser.parse_args(argv)
    setup_logging("INFO", sys.stdout)
    package_dir = Path(__file__).resolve().parents[2]
    try:
        host = probe_host()
        choice = choose_runtime(args.runtime.strip().lower(), host)
        log_event(log, "runtime_chosen", **asdict(choice), host=asdict(host))
        install(make_plan(choice, package_dir, args.artifacts, host), args.venv)
    except InstallError as exc:
        log_event(log, "install_failed", logging.ERROR, error=str(exc))
        print(f"install failed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
