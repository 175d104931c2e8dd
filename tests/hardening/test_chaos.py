"""The shortened ``make chaos`` run: real processes killed at fixed-seed moments, every seq accounted for.

Every fault kind (redis-server and mosquitto SIGKILL, the rule bridge SIGKILL, the camera going away, Redis
refusing writes or down past the retry budget) must lose nothing within the queue's capacity and create no
duplicate record; over capacity, the loss must equal the queue's own drop counter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import chaos


def run(tmp_path: Path, kinds: str, extra: list[str]) -> list[dict]:
    out = tmp_path / "chaos.json"
    code = chaos.main(
        [
            "--quick",
            "--duration",
            "10",
            "--rate",
            "15",
            "--kinds",
            kinds,
            "--json",
            str(out),
            "--workdir",
            str(tmp_path),
            *extra,
        ]
    )
    results = json.loads(out.read_text())["results"]
    for r in results:  # the accounting itself must add up whatever the verdict
        assert r["sent"] > 0 and r["stored"] + r["lost"] == r["sent"]
        # The device side: every produced message was either acknowledged by the broker or counted as dropped.
        assert r["acknowledged"] + r["dropped"] == r["sent"], r
        assert r["duplicate_records"] == 0, "a redelivered message created a second record"
    assert (code == 0) == all(r["ok"] for r in results)
    return results


@pytest.mark.slow
def test_redis_and_camera_faults_lose_nothing(tmp_path: Path) -> None:
    (within,) = run(tmp_path, "redis,camera", ["--skip-overflow"])
    assert [f["kind"] for f in within["faults"]] == ["redis", "camera"] or len(within["faults"]) == 2
    assert all(f["error"] is None for f in within["faults"])
    assert within["dropped"] == 0 and within["lost"] == 0, within
    assert within["stored"] == within["sent"]
    assert within["source_reconnects"] >= 1, "the camera fault did not reach the source watchdog"


@pytest.mark.slow
def test_broker_and_bridge_faults_lose_nothing_within_capacity(tmp_path: Path) -> None:
    results = run(tmp_path, "bridge,mosquitto", [])
    assert all(r["ok"] for r in results), [(r["name"], r["verdict"]) for r in results]


@pytest.mark.slow
def test_a_store_that_refuses_writes_or_stays_down_loses_nothing(tmp_path: Path) -> None:
    """Both longer than the bridge's 4.2 s retry budget (shortened from 10 s and 30 s): the spool carries them."""
    (within,) = run(
        tmp_path, "store-refuses,store-down", ["--skip-overflow", *("--store-refuses-s", "5", "--store-down-s", "6")]
    )
    assert sorted(f["kind"] for f in within["faults"]) == ["store-down", "store-refuses"]
    assert all(f["error"] is None for f in within["faults"])
    assert within["dropped"] == 0 and within["lost"] == 0, within
    assert within["spooled"] > 0, "no message waited in the spool: the faults did not outlast the retry budget"
