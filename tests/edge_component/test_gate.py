"""The send gate (``edge_component.gate``): rate limit, change detection and heartbeat."""

from __future__ import annotations

import numpy as np

from edge_component.config import LiveSettings
from edge_component.gate import Gate


def unit(dim: int = 64, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_gate_rate_change_and_heartbeat() -> None:
    gate = Gate(LiveSettings(max_rate_hz=2, change_threshold=0.95, heartbeat_s=10))
    a, b = unit(seed=1), unit(seed=2)
    assert gate.check(a, 100.0).decision == "send"
    assert gate.check(b, 100.2).decision == "rate"  # 0.2 s < 1/2 Hz
    assert gate.check(a, 101.0).decision == "unchanged"  # same vector as the last published
    assert gate.check(b, 101.5).decision == "send"  # changed
    assert gate.check(b, 111.6).decision == "send"  # unchanged, but the heartbeat is due
    gate.update(LiveSettings(max_rate_hz=0, change_threshold=None))
    assert gate.check(b, 111.61).decision == "send"


def test_the_loop_gates_region_vectors_on_all_regions_not_the_first() -> None:
    from edge_component.loop import _change_vector

    rng = np.random.default_rng(4)
    regions = rng.standard_normal((4, 16)).astype(np.float32)
    regions /= np.linalg.norm(regions, axis=1, keepdims=True)
    moved = regions.copy()
    moved[3] = -regions[3]  # the product moved in the last window only; the first is unchanged
    before, after = _change_vector(regions), _change_vector(moved)
    assert np.isclose(np.linalg.norm(before), 1.0) and float(before @ after) < 0.9
    assert np.array_equal(_change_vector(regions[:1]), regions[0])  # one vector: gated as it is
