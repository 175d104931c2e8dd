"""Stage timings and counters kept by the loop, read by the status reporter and the bench."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class Timings:
    """Rolling window of per-stage durations in milliseconds; percentiles on demand."""

    def __init__(self, window: int = 512) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._stages: dict[str, deque[float]] = {}

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stages.setdefault(stage, deque(maxlen=self._window)).append(ms)

    def percentiles(self, stage: str, qs: tuple[float, ...] = (50, 95)) -> dict[str, float] | None:
        with self._lock:
            values = list(self._stages.get(stage, ()))
        if not values:
            return None
        out = np.percentile(np.asarray(values), qs)
        return {f"p{q:g}": round(float(v), 3) for q, v in zip(qs, out, strict=True)}

    def values(self, stage: str) -> list[float]:
        with self._lock:
            return list(self._stages.get(stage, ()))

    def stages(self) -> list[str]:
        with self._lock:
            return list(self._stages)


class RateMeter:
    """Events per second over a sliding window of the last ``window`` events."""

    def __init__(self, window: int = 64) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)

    def rate(self, now: float, stale_after: float = 5.0) -> float:
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or now - times[-1] > stale_after:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)
