"""Backend base class and registry (Frigate-style: one plugin file per runtime)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from model.contracts.errors import VisualSearchError
from model.contracts.model_file import OUTPUT_NAME


class BackendUnavailable(VisualSearchError, RuntimeError):
    """The runtime is not installed, or the requested device/provider is not present."""


@dataclass(frozen=True)
class BackendInfo:
    """What actually runs the model: reported in logs, ``model info`` and the device status message."""

    backend: str
    device: str
    providers: tuple[str, ...] = field(default_factory=tuple)
    threads: int | None = None
    precision: str | None = None
    """Arithmetic the runtime actually uses when it says (OpenVINO CPU runs fp32 models in bf16 where it can)."""

    def describe(self) -> str:
        extra = f" providers={','.join(self.providers)}" if self.providers else ""
        threads = f" threads={self.threads}" if self.threads else ""
        precision = f" precision={self.precision}" if self.precision else ""
        return f"{self.backend} on {self.device}{extra}{threads}{precision}"


class InferenceBackend(ABC):
    """Runs one ONNX featurizer: uint8 ``[N, S, S, 3]`` in, float32 ``[N, D]`` out."""

    name: ClassVar[str]
    priority: ClassVar[int] = 100
    """Order of the candidates in ``auto``'s trial and in listings (the trial, not this, picks the winner)."""
    options: ClassVar[frozenset[str]] = frozenset()
    """Backend-specific keyword options its constructor takes (e.g. ``spinning``, ``precision``)."""
    fallback: str | None = None
    """Set when the runtime silently runs on something other than the device asked for (onnxruntime drops a
    provider whose libraries are missing): ``auto``'s trial skips such a candidate instead of timing the CPU
    twice under a GPU's name."""

    module: ClassVar[str]
    """The Python package of the runtime (``onnxruntime``, ``openvino``): the backend is available where it
    imports."""

    @classmethod
    def is_available(cls) -> bool:
        """True when the runtime imports here (cheap; no model is loaded)."""
        try:
            importlib.import_module(cls.module)
        except ImportError:
            return False
        return True

    @classmethod
    def candidate_devices(cls) -> list[str]:
        """The devices of this runtime present here that ``auto`` should time (e.g. ``cuda``, ``cpu``)."""
        return ["auto"]

    @classmethod
    def fingerprint(cls) -> dict[str, str]:
        """What a cached ``auto`` choice depends on: runtime version, providers or devices and their names."""
        return {}

    @abstractmethod
    def __init__(self, model_path: str, device: str = "auto", threads: int | None = None) -> None: ...

    @property
    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def run(self, batch: np.ndarray, output: str = OUTPUT_NAME) -> np.ndarray:
        """``batch`` is already validated (uint8, C-contiguous, right shape). ``output``: which graph output
        (``embedding``, or ``regions`` of a region-vector model)."""


BACKENDS: dict[str, type[InferenceBackend]] = {}

_PLUGIN_MODULES = ("model.runtime.onnxruntime_backend", "model.runtime.openvino_backend")


def register(cls: type[InferenceBackend]) -> type[InferenceBackend]:
    BACKENDS[cls.name] = cls
    return cls


def _load_plugins() -> None:
    for module in _PLUGIN_MODULES:
        importlib.import_module(module)


def available_backends() -> list[str]:
    _load_plugins()
    ordered = sorted(BACKENDS.values(), key=lambda c: c.priority)
    return [c.name for c in ordered if c.is_available()]


def registry() -> dict[str, type[InferenceBackend]]:
    """Every registered backend (installed or not), plugins loaded."""
    _load_plugins()
    return BACKENDS


def check_options(options: dict[str, Any], backends: Mapping[str, type[InferenceBackend]]) -> None:
    unknown = set(options) - set().union(*(c.options for c in backends.values()))
    if unknown:
        raise TypeError(f"no backend takes the option(s) {', '.join(sorted(unknown))}")


def open_backend(
    cls: type[InferenceBackend], model_path: str, device: str, threads: int | None, options: dict[str, Any]
) -> InferenceBackend:
    """``cls`` on ``device`` with the options it declares (the others are ignored, so one call fits all)."""
    own = {key: value for key, value in options.items() if key in cls.options and value is not None}
    return cls(model_path, device=device, threads=threads, **own)


def explicit_backend(
    model_path: str,
    backend: str,
    device: str = "auto",
    threads: int | None = None,
    backends: Mapping[str, type[InferenceBackend]] | None = None,
    **options: Any,
) -> InferenceBackend:
    """The named backend, or a clear error when it is unknown or not installed."""
    backends = registry() if backends is None else backends
    check_options(options, backends)
    if backend not in backends:
        raise BackendUnavailable(f"unknown backend '{backend}'; known: {', '.join(sorted(backends))}")
    cls = backends[backend]
    if not cls.is_available():
        raise BackendUnavailable(f"backend '{backend}' is not installed here (pip extra missing?)")
    return open_backend(cls, model_path, device, threads, options)


def create_backend(
    model_path: str, backend: str = "auto", device: str = "auto", threads: int | None = None, **options: Any
) -> InferenceBackend:
    """Open ``model_path`` on ``backend``, or on the fastest one measured here when ``auto``.

    ``options`` go to the backends that declare them in :attr:`InferenceBackend.options` and are ignored by
    the others, so one call works whichever backend ``auto`` picks (e.g. ``spinning`` is onnxruntime's).
    ``auto`` runs :func:`model.runtime.selection.select_backend` with its default cache; callers that report
    the choice (``Featurizer``) call that directly.
    """
    if backend != "auto":
        return explicit_backend(model_path, backend, device, threads, **options)
    from model.runtime.selection import select_backend

    return select_backend(model_path, backend, device, threads, **options).backend
