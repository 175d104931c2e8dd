"""Backend base class and registry (Frigate-style: one plugin file per runtime)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


class BackendUnavailable(RuntimeError):
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
    options: ClassVar[frozenset[str]] = frozenset()
    """Backend-specific keyword options its constructor takes (e.g. ``spinning``, ``precision``)."""
    """Lower runs first when the backend is chosen automatically."""

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """True when the runtime imports here (cheap; no model is loaded)."""

    @abstractmethod
    def __init__(self, model_path: str, device: str = "auto", threads: int | None = None) -> None: ...

    @property
    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` is already validated (uint8, C-contiguous, right shape)."""


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


def create_backend(
    model_path: str, backend: str = "auto", device: str = "auto", threads: int | None = None, **options: Any
) -> InferenceBackend:
    """Open ``model_path`` on ``backend`` (or the best available one when ``auto``).

    ``options`` go to the backends that declare them in :attr:`InferenceBackend.options` and are ignored by
    the others, so one call works whichever backend ``auto`` picks (e.g. ``spinning`` is onnxruntime's).
    """
    _load_plugins()

    def open_with(cls: type[InferenceBackend]) -> InferenceBackend:
        own = {key: value for key, value in options.items() if key in cls.options and value is not None}
        return cls(model_path, device=device, threads=threads, **own)

    unknown = set(options) - set().union(*(c.options for c in BACKENDS.values()))
    if unknown:
        raise TypeError(f"no backend takes the option(s) {', '.join(sorted(unknown))}")
    if backend != "auto":
        if backend not in BACKENDS:
            raise BackendUnavailable(f"unknown backend '{backend}'; known: {', '.join(sorted(BACKENDS))}")
        cls = BACKENDS[backend]
        if not cls.is_available():
            raise BackendUnavailable(f"backend '{backend}' is not installed here (pip extra missing?)")
        return open_with(cls)
    errors: list[str] = []
    for name in available_backends():
        try:
            return open_with(BACKENDS[name])
        except BackendUnavailable as exc:
            errors.append(f"{name}: {exc}")
    raise BackendUnavailable("no inference backend could open the model: " + "; ".join(errors or ["none installed"]))
