"""What a measured backend choice depends on: the machine, the installed runtimes and the settings.

A cached ``auto`` choice is reused only while this fingerprint is unchanged, so a new CPU (a VM moved to
another host type), a runtime upgrade, a newly installed provider or GPU driver, or another thread count
makes the next start measure again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.logs import log_event
from model.runtime.base import InferenceBackend

log = logging.getLogger(__name__)

_CPUINFO = Path("/proc/cpuinfo")
_DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # Jetson and other ARM boards name themselves here
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU when the NVIDIA driver is loaded


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_fingerprint() -> dict[str, str]:
    """CPU model, instruction-set flags (hashed: they decide int8/bf16 speed), cores this process may use."""
    fields = _cpuinfo_fields(_read(_CPUINFO))
    model = fields.get("model name") or fields.get("Hardware") or fields.get("CPU part") or platform.processor()
    flags = fields.get("flags") or fields.get("Features") or ""
    found = {
        "cpu": model or "unknown",
        "cpu.flags": hashlib.sha1(" ".join(sorted(flags.split())).encode()).hexdigest()[:12],
        "machine": platform.machine(),
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
    }
    board = _read(_DEVICE_TREE_MODEL).strip("\x00\n ")
    if board:
        found["board"] = board
    return found


def gpu_fingerprint() -> dict[str, str]:
    """NVIDIA GPU models from the driver's /proc files (absent without a driver; no CUDA import needed)."""
    found: dict[str, str] = {}
    if not _NVIDIA_GPUS.is_dir():
        return found
    for index, gpu in enumerate(sorted(_NVIDIA_GPUS.iterdir())):
        fields = _cpuinfo_fields(_read(gpu / "information"))
        found[f"gpu.{index}"] = fields.get("Model", "unknown")
    return found


def runtime_fingerprint(backends: Mapping[str, type[InferenceBackend]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, cls in sorted(backends.items()):
        try:
            found.update(cls.fingerprint())
        except Exception as exc:  # a broken runtime install must not stop the device; it is part of the print
            found[name] = f"error: {type(exc).__name__}"
            log_event(log, "backend_fingerprint_failed", logging.WARNING, backend=name, error=str(exc))
    return found


def fingerprint(
    backends: Mapping[str, type[InferenceBackend]], threads: int | None, options: Mapping[str, Any]
) -> dict[str, str]:
    """Everything a measured choice depends on, as flat strings (stored with the choice, compared on start)."""
    settings = {"threads": str(threads)} | {f"option.{k}": str(v) for k, v in sorted(options.items()) if v is not None}
    return cpu_fingerprint() | gpu_fingerprint() | runtime_fingerprint(backends) | settings


def differences(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The keys whose values changed, for the log line that explains a new measurement."""
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
