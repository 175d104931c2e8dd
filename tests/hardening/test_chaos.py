"""The shortened ``make chaos`` run: real processes killed at fixed-seed moments, every seq accounted for.

Faults whose recovery the system promises today (redis-server SIGKILL with the stand-in's AOF, the camera
going away) must lose nothing and duplicate nothing. Broker and rule-bridge kills are run too; they lose
messages because of a known defect in the local rule bridge (see the xfail reason) — the test is strict,
so it starts failing the day the defect is fixed and the marker must come off.
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
@pytest.mark.xfail(
    strict=True,
    reason="DEFECT (simulator/stack/bridge.py): the rule bridge subscribes with clean_session=True and acks on "
    "receipt, and mosquitto runs without persistence, so messages published while the bridge is down, or after a "
    "broker restart before the bridge re-subscribes, are discarded (AWS IoT rules do not have this gap)",
)
def test_broker_and_bridge_faults_lose_nothing_within_capacity(tmp_path: Path) -> None:
    results = run(tmp_path, "bridge,mosquitto", [])
    assert all(r["ok"] for r in results), [(r["name"], r["verdict"]) for r in results]
