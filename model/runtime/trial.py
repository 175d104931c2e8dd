"""``auto``'s timed trial: open every candidate on the real model, warm it up, time it on one prepared frame.

Candidates are timed in interleaved rounds (A, B, A, B, ...) rather than one after another, so a frequency
ramp or a neighbour's burst on a shared machine falls on all of them alike. The timed part stops after
``budget_s``; opening a candidate cannot be interrupted (a TensorRT engine build may take minutes the first
time; onnxruntime caches the engine beside the model, so later starts are quick).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model.logs import log_event
from model.runtime.base import InferenceBackend, open_backend

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class TrialSettings(BaseModel):
    """How long ``auto`` may spend measuring at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(default=3, ge=0, le=50, description="Untimed runs per candidate (allocations, JIT, caches).")
    runs: int = Field(default=15, ge=1, le=500, description="Timed runs per candidate when the budget allows.")
    min_runs: int = Field(default=3, ge=1, le=50, description="Timed runs per candidate even past the budget.")
    budget_s: float = Field(default=3.0, gt=0, le=120, description="Wall time for the timed rounds, all together.")


@dataclass(frozen=True)
class Candidate:
    backend: str
    device: str

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.device}"


@dataclass
class TrialResult:
    """Median ms per timed candidate, the error of each skipped one, and the open winner."""

    measured_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    winner: Candidate | None = None
    backend: InferenceBackend | None = None


def _open_all(
    candidates: list[Candidate],
    backends: Mapping[str, type[InferenceBackend]],
    model_path: str,
    threads: int | None,
    options: dict[str, Any],
    result: TrialResult,
) -> dict[Candidate, InferenceBackend]:
    opened: dict[Candidate, InferenceBackend] = {}
    for candidate in candidates:
        try:
            impl = open_backend(backends[candidate.backend], model_path, candidate.device, threads, options)
        except Exception as exc:  # any runtime error: skip the candidate, keep the device starting
            result.skipped[candidate.label] = f"{type(exc).__name__}: {exc}"[:300]
            log_event(
                log, "backend_candidate_skipped", logging.WARNING, candidate=candidate.label, error=str(exc)[:300]
            )
            continue
        if impl.fallback:
            result.skipped[candidate.label] = impl.fallback
            log_event(log, "backend_candidate_skipped", logging.WARNING, candidate=candidate.label, error=impl.fallback)
            continue
        opened[candidate] = impl
    return opened


def _warm_up(opened: dict[Candidate, InferenceBackend], frame: np.ndarray, warmup: int, result: TrialResult) -> None:
    for candidate, impl in list(opened.items()):
        try:
            for _ in range(max(1, warmup)):
                impl.run(frame)
        except Exception as exc:  # loads but cannot run (e.g. an unsupported op on a GPU plugin)
            result.skipped[candidate.label] = f"{type(exc).__name__}: {exc}"[:300]
            log_event(
                log, "backend_candidate_skipped", logging.WARNING, candidate=candidate.label, error=str(exc)[:300]
            )
            del opened[candidate]


def _timed_rounds(
    opened: dict[Candidate, InferenceBackend], frame: np.ndarray, settings: TrialSettings, clock: Clock
) -> dict[Candidate, list[float]]:
    samples: dict[Candidate, list[float]] = {c: [] for c in opened}
    deadline = clock() + settings.budget_s
    for round_index in range(settings.runs):
        if round_index >= settings.min_runs and clock() > deadline:
            break
        for candidate, impl in opened.items():
            started = clock()
            impl.run(frame)
            samples[candidate].append((clock() - started) * 1000.0)
    return samples


def run_trial(
    candidates: list[Candidate],
    backends: Mapping[str, type[InferenceBackend]],
    model_path: str,
    frame: np.ndarray,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
    settings: TrialSettings | None = None,
    clock: Clock = time.perf_counter,
) -> TrialResult:
    """Time ``candidates`` on ``frame`` (uint8 ``[1, S, S, 3]``); the fastest stays open in ``result.backend``."""
    settings = settings or TrialSettings()
    result = TrialResult()
    opened = _open_all(candidates, backends, model_path, threads, options or {}, result)
    _warm_up(opened, frame, settings.warmup, result)
    if not opened:
        return result
    samples = _timed_rounds(opened, frame, settings, clock)
    result.measured_ms = {c.label: round(statistics.median(ms), 3) for c, ms in samples.items()}
    winner = min(samples, key=lambda c: statistics.median(samples[c]))
    result.winner, result.backend = winner, opened[winner]
    return result
