"""Which featurized frames are worth sending: a rate limit and a change gate with a heartbeat.

The change gate compares each vector with the *last published* one (not the last seen), so a slow drift
still triggers a send once it adds up; the heartbeat sends at least one vector every ``heartbeat_s`` so
the cloud keeps showing matches for a scene that does not change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_component.config import LiveSettings

Decision = Literal["send", "rate", "unchanged"]


@dataclass
class GateResult:
    decision: Decision
    cosine: float | None


class Gate:
    """Thread-safe: settings may be replaced from the configuration thread while the loop runs."""

    def __init__(self, settings: LiveSettings) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._last_vector: np.ndarray | None = None
        self._last_sent_at: float | None = None

    @property
    def settings(self) -> LiveSettings:
        return self._settings

    def update(self, settings: LiveSettings) -> None:
        with self._lock:
            self._settings = settings

    def ready_at(self) -> float:
        """Monotonic time before which a frame would be refused by the rate limit (0: now)."""
        with self._lock:
            rate = self._settings.max_rate_hz
            if rate <= 0 or self._last_sent_at is None:
                return 0.0
            return self._last_sent_at + 1.0 / rate

    def check(self, vector: np.ndarray, now: float) -> GateResult:
        """Decide for one vector at monotonic time ``now``; a "send" is recorded as published."""
        with self._lock:
            s = self._settings
            if self._last_sent_at is not None and s.max_rate_hz > 0 and now - self._last_sent_at < 1.0 / s.max_rate_hz:
                return GateResult("rate", None)
            cosine: float | None = None
            if self._last_vector is not None:
                cosine = float(np.dot(self._last_vector, vector))
            heartbeat_due = self._last_sent_at is None or now - self._last_sent_at >= s.heartbeat_s
            if (
                s.change_threshold is not None
                and cosine is not None
                and cosine > s.change_threshold
                and not heartbeat_due
            ):
                return GateResult("unchanged", cosine)
            self._last_vector = np.array(vector, dtype=np.float32, copy=True)
            self._last_sent_at = now
            return GateResult("send", cosine)
