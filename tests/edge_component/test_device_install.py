"""The Install step's decisions: which runtime a device gets, what pip is asked, when the venv is rebuilt.

The real install (a venv built by pip on this machine) runs in test_component_on_core.py; here the host is
described, so every device class is covered, including the GPU ones this machine lacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_component.packaging.build import ROOT
from edge_component.packaging.device_install import (
    Choice,
    Host,
    InstallError,
    choose_runtime,
    installed_runtime,
    make_plan,
    pip_command,
    probe_host,
)

PINS = ROOT / "requirements/device"
INTEL = Host(machine="x86_64", python="3.12.3", cpu_vendor="GenuineIntel")
NVIDIA_X86 = Host(machine="x86_64", python="3.10.12", nvidia_driver="NVRM version: 550.54", cpu_vendor="AuthenticAMD")
NVIDIA_TRT = Host(machine="x86_64", python="3.10.12", nvidia_driver="NVRM version: 550.54", tensorrt=True)
JETSON = Host(machine="aarch64", python="3.10.12", jetson="# R36 (release), REVISION: 3.0")
PI = Host(machine="aarch64", python="3.11.2")


@pytest.mark.parametrize(
    ("host", "runtime", "reason"),
    [
        (INTEL, "openvino", "x86_64 CPU (GenuineIntel)"),
        (NVIDIA_X86, "cuda", "NVIDIA driver loaded"),
        (NVIDIA_TRT, "cuda", "NVIDIA driver loaded"),  # TensorRT EP is used by the start-up trial if it runs
        (JETSON, "jetson", "NVIDIA Jetson"),
        (PI, "cpu", "aarch64 without an NVIDIA Jetson/driver"),
    ],
)
def test_auto_picks_the_runtime_for_the_device_class(host: Host, runtime: str, reason: str) -> None:
    choice = choose_runtime("auto", host)
    assert (choice.runtime, choice.requested) == (runtime, "auto")
    assert reason in choice.reason


@pytest.mark.parametrize(
    ("requested", "host", "message"),
    [
        ("gpu", INTEL, "configuration key 'runtime': 'gpu' is not one of auto, cpu, openvino, cuda, tensorrt, jetson"),
        ("cuda", INTEL, "needs the NVIDIA driver"),
        ("cuda", JETSON, "use runtime 'jetson'"),
        ("cuda", PI, "built for x86_64"),
        ("tensorrt", NVIDIA_X86, "needs TensorRT 10 (libnvinfer.so.10 not found"),
        ("jetson", INTEL, "needs an NVIDIA Jetson"),
    ],
)
def test_a_runtime_the_device_cannot_run_is_refused_with_what_to_do(requested: str, host: Host, message: str) -> None:
    with pytest.raises(InstallError) as caught:
        choose_runtime(requested, host)
    assert message in str(caught.value)


@pytest.mark.parametrize("runtime", ["cpu", "openvino", "tensorrt"])
def test_an_explicit_runtime_the_device_can_run_is_kept(runtime: str) -> None:
    host = NVIDIA_TRT if runtime == "tensorrt" else INTEL
    assert choose_runtime(runtime, host) == Choice(runtime, runtime, "set in the configuration")


def test_probe_reads_the_device_from_its_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text("NVRM version: NVIDIA UNIX Open Kernel Module 540.3.0\n")
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    host = probe_host(tmp_path)
    assert host.jetson == "# R36 (release), REVISION: 3.0"
    assert host.nvidia_driver and host.nvidia_driver.startswith("NVRM version")
    assert host.cpu_vendor == "GenuineIntel"
    assert choose_runtime("auto", host).runtime == "jetson"
    bare = probe_host(tmp_path / "nothing-here")
    assert (bare.jetson, bare.nvidia_driver, bare.cpu_vendor) == (None, None, None)


def _package(tmp_path: Path) -> Path:
    package = tmp_path / "EdgeVisualSearch"
    (package / "requirements").mkdir(parents=True)
    for pins in PINS.glob("*.txt"):
        (package / "requirements" / pins.name).write_text(pins.read_text())
    return package


def test_plan_uses_the_runtime_pins_and_an_offline_wheelhouse_when_shipped(tmp_path: Path) -> None:
    package = _package(tmp_path)
    online = make_plan(choose_runtime("tensorrt", NVIDIA_TRT), package, tmp_path, NVIDIA_TRT)
    assert online.requirements.name == "cuda.txt" and online.wheelhouse is None
    command = pip_command(online, Path("/w/venv/bin/python"))
    assert command[:4] == ["/w/venv/bin/python", "-m", "pip", "install"]
    assert "--only-binary=:all:" in command and "--no-index" not in command
    (tmp_path / "wheelhouse-linux-x86_64").mkdir()
    offline = make_plan(choose_runtime("openvino", INTEL), package, tmp_path, INTEL)
    assert offline.wheelhouse == tmp_path / "wheelhouse-linux-x86_64"
    assert pip_command(offline, Path("p"))[-3:] == ["--no-index", "--find-links", str(offline.wheelhouse)]
    jetson = make_plan(choose_runtime("auto", JETSON), package, None, JETSON)
    assert jetson.system_site_packages and jetson.requirements.name == "jetson.txt"


def test_the_venv_is_rebuilt_exactly_when_the_plan_changes(tmp_path: Path) -> None:
    package = _package(tmp_path)
    same = [make_plan(choose_runtime("openvino", INTEL), package, None, INTEL).fingerprint for _ in range(2)]
    assert same[0] == same[1]
    other_runtime = make_plan(choose_runtime("cpu", INTEL), package, None, INTEL).fingerprint
    other_python = make_plan(choose_runtime("openvino", INTEL), package, None, Host("x86_64", "3.11.9")).fingerprint
    (package / "requirements/common.txt").write_text("pydantic==2.14.3\n")
    other_pins = make_plan(choose_runtime("openvino", INTEL), package, None, INTEL).fingerprint
    assert len({same[0], other_runtime, other_python, other_pins}) == 4


def test_the_component_reads_what_install_chose(tmp_path: Path) -> None:
    report = tmp_path / "install.json"
    report.write_text(json.dumps({"runtime": "openvino", "requested": "auto", "reason": "x86_64", "fingerprint": "f"}))
    assert installed_runtime({"EVS_INSTALL_REPORT": str(report)}) == {
        "runtime": "openvino",
        "requested": "auto",
        "reason": "x86_64",
    }
    assert installed_runtime({}) is None
    assert installed_runtime({"EVS_INSTALL_REPORT": str(tmp_path / "missing.json")}) is None
