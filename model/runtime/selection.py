"""Which backend runs the model: the one named, or for ``auto`` the fastest one measured on this machine.

``auto`` lists every (backend, device) candidate present (onnxruntime per execution provider: TensorRT,
CUDA, OpenVINO EP, CPU; OpenVINO per device: CPU, GPU.n, NPU), times each on the real model
(:mod:`model.runtime.trial`) and keeps the fastest. The result is cached per model id together with the
machine/runtime fingerprint it was measured under (:mod:`model.runtime.fingerprint`,
:mod:`model.runtime.choice_cache`); the next start with the same fingerprint opens the cached choice directly,
a changed fingerprint measures again. The reason for the choice travels with it (:class:`BackendChoice`) into
logs, the device status and ``visual-search model info``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.logs import log_event
from model.runtime.base import (
    BackendUnavailable,
    InferenceBackend,
    check_options,
    explicit_backend,
    open_backend,
    registry,
)
from model.runtime.choice_cache import CachedChoice, ChoiceCache
from model.runtime.fingerprint import differences, fingerprint
from model.runtime.trial import Candidate, Clock, TrialSettings, run_trial

log = logging.getLogger(__name__)

How = Literal["explicit", "measured", "cached", "only candidate"]


@dataclass(frozen=True)
class BackendChoice:
    """What was chosen and why: the part of the status message and logs that answers "why this backend?"."""

    backend: str
    device: str
    how: How
    measured_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    measured_at: str | None = None

    @property
    def reason(self) -> str:
        if self.how == "explicit":
            return "explicit backend setting"
        if self.how == "only candidate":
            return "only candidate" + (f" ({len(self.skipped)} other(s) failed to load)" if self.skipped else "")
        timings = ", ".join(
            f"{label} {ms:.2f} ms" for label, ms in sorted(self.measured_ms.items(), key=lambda i: i[1])
        )
        prefix = "measured" if self.how == "measured" else f"cached from {self.measured_at}"
        return f"{prefix}: {timings}" + (f"; skipped {', '.join(sorted(self.skipped))}" if self.skipped else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "how": self.how,
            "reason": self.reason,
            "measured_ms": self.measured_ms,
            "skipped": self.skipped,
            "measured_at": self.measured_at,
        }


@dataclass
class Selected:
    backend: InferenceBackend
    choice: BackendChoice


def list_candidates(backends: Mapping[str, type[InferenceBackend]], device: str = "auto") -> list[Candidate]:
    """Every installed (backend, device) pair, in backend priority order; ``device`` other than ``auto`` keeps
    only the pairs whose device has that name (case-insensitive: ``cpu`` matches onnxruntime's and OpenVINO's)."""
    found: list[Candidate] = []
    for name, cls in sorted(backends.items(), key=lambda item: item[1].priority):
        try:
            if not cls.is_available():
                continue
            devices = cls.candidate_devices()
        except Exception as exc:  # a runtime that imports but cannot list its devices is not a candidate
            log_event(log, "backend_not_listed", logging.WARNING, backend=name, error=str(exc)[:300])
            continue
        found += [Candidate(name, d) for d in devices]
    if device.lower() != "auto":
        found = [c for c in found if c.device.lower() == device.lower()]
    return found


def _prepared_frame(input_size: int) -> np.ndarray:
    # Image-like content rather than zeros: some runtimes skip work on constant input.
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1, input_size, input_size, 3), dtype=np.uint8)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _from_cache(
    cache: ChoiceCache,
    entry: str,
    printed: dict[str, str],
    candidates: list[Candidate],
    backends: Mapping[str, type[InferenceBackend]],
    model_path: str,
    threads: int | None,
    options: dict[str, Any],
) -> Selected | None:
    cached = cache.get(entry)
    if cached is None:
        return None
    changed = differences(cached.fingerprint, printed)
    if changed:
        log_event(log, "backends_changed", entry=entry, changed=changed)
        return None
    if Candidate(cached.backend, cached.device) not in candidates:
        return None
    try:
        impl = open_backend(backends[cached.backend], model_path, cached.device, threads, options)
    except Exception as exc:  # it loaded last time; measure again rather than fail
        log_event(log, "cached_backend_choice_failed", logging.WARNING, error=str(exc)[:300])
        return None
    choice = BackendChoice(
        cached.backend, cached.device, "cached", cached.measured_ms, cached.skipped, cached.measured_at
    )
    return Selected(impl, choice)


def _only(
    candidate: Candidate,
    backends: Mapping[str, type[InferenceBackend]],
    model_path: str,
    threads: int | None,
    options: dict[str, Any],
) -> Selected:
    impl = open_backend(backends[candidate.backend], model_path, candidate.device, threads, options)
    return Selected(impl, BackendChoice(candidate.backend, candidate.device, "only candidate"))


def select_backend(
    model_path: str,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    *,
    model_id: str | None = None,
    input_size: int | None = None,
    cache: ChoiceCache | Literal[False] | None = None,
    trial: TrialSettings | None = None,
    backends: Mapping[str, type[InferenceBackend]] | None = None,
    clock: Clock = time.perf_counter,
    **options: Any,
) -> Selected:
    """Open ``model_path`` on ``backend``; for ``auto`` on the fastest candidate (cached, or measured now).

    ``model_id`` and ``input_size`` default to the model's sidecar. ``cache``: ``None`` = the default file
    (:func:`model.runtime.choice_cache.default_cache_path`), ``False`` = measure without reading or writing one.
    """
    backends = registry() if backends is None else backends
    check_options(options, backends)
    if backend != "auto":
        impl = explicit_backend(model_path, backend, device, threads, backends, **options)
        selected = Selected(impl, BackendChoice(impl.info.backend, impl.info.device, "explicit"))
    else:
        selected = _auto(model_path, device, threads, model_id, input_size, cache, trial, backends, clock, options)
    log_event(log, "inference_backend_chosen", model=Path(model_path).name, **selected.choice.as_dict())
    return selected


def _auto(
    model_path: str,
    device: str,
    threads: int | None,
    model_id: str | None,
    input_size: int | None,
    cache: ChoiceCache | Literal[False] | None,
    trial: TrialSettings | None,
    backends: Mapping[str, type[InferenceBackend]],
    clock: Clock,
    options: dict[str, Any],
) -> Selected:
    if model_id is None or input_size is None:
        from model.sidecar import read_sidecar

        sidecar = read_sidecar(Path(model_path))
        model_id, input_size = model_id or sidecar.model_id, input_size or sidecar.input_size
    candidates = list_candidates(backends, device)
    if not candidates:
        raise BackendUnavailable(f"no inference backend installed here offers device '{device}'")
    if len(candidates) == 1:
        return _only(candidates[0], backends, model_path, threads, options)
    store = None if cache is False else (cache or ChoiceCache())
    printed = fingerprint({c.backend: backends[c.backend] for c in candidates}, threads, options)
    entry = cache_entry(model_id, threads, options)
    if store is not None:
        hit = _from_cache(store, entry, printed, candidates, backends, model_path, threads, options)
        if hit is not None:
            return hit
    return _measure(candidates, backends, model_path, entry, input_size, threads, options, trial, clock, store, printed)


def cache_entry(model_id: str, threads: int | None, options: Mapping[str, Any]) -> str:
    """The cache key: the model id, plus the settings when not the defaults, so a device (threads unset, no
    spinning) and a catalog run (2 threads, spinning) of the same model on one machine keep their own choices
    instead of evicting each other. Machine and runtimes stay in the fingerprint: their change re-measures."""
    settings = {"threads": threads} if threads is not None else {}
    settings |= {key: value for key, value in sorted(options.items()) if value is not None}
    return model_id if not settings else model_id + "?" + "&".join(f"{k}={v}" for k, v in settings.items())


def _measure(
    candidates: list[Candidate],
    backends: Mapping[str, type[InferenceBackend]],
    model_path: str,
    entry: str,
    input_size: int,
    threads: int | None,
    options: dict[str, Any],
    trial: TrialSettings | None,
    clock: Clock,
    store: ChoiceCache | None,
    printed: dict[str, str],
) -> Selected:
    result = run_trial(candidates, backends, model_path, _prepared_frame(input_size), threads, options, trial, clock)
    if result.winner is None or result.backend is None:
        errors = "; ".join(f"{label}: {error}" for label, error in result.skipped.items())
        raise BackendUnavailable(f"no inference backend could open {model_path}: {errors}")
    if len(result.measured_ms) == 1:  # the others failed to load: nothing was compared
        choice = BackendChoice(
            result.winner.backend, result.winner.device, "only candidate", result.measured_ms, result.skipped
        )
        return Selected(result.backend, choice)
    measured_at = _now()
    choice = BackendChoice(
        result.winner.backend, result.winner.device, "measured", result.measured_ms, result.skipped, measured_at
    )
    if store is not None:
        store.put(
            entry,
            CachedChoice(choice.backend, choice.device, choice.measured_ms, choice.skipped, measured_at, printed),
        )
    return Selected(result.backend, choice)
