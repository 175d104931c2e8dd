"""`visual-search simulate` on the real transport: live mode (the edge loop) and replay mode, through the bridge."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from edge_component.config import MqttConfig
from model.hub import main
from simulator.replay import ReplayConfig, run_replay
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess, RedisProcess
from tests.simulator.conftest import TinyCatalog
from tests.wait import wait_for


@pytest.fixture
def stack(tiny_catalog: TinyCatalog, mosquitto: MosquittoProcess, redis_server: RedisProcess) -> Iterator[redis.Redis]:
    settings = CloudSettings.build(
        index_dir=str(tiny_catalog.index_dir), redis_url=redis_server.url, match_list_cap=10_000
    )
    service = SearchService(settings)
    bridge = RuleBridge(service.handle_feature_event, service.handle_status_event, port=mosquitto.port, client_id="b")
    bridge.start()
    try:
        yield redis.Redis(host=redis_server.host, port=redis_server.port)
    finally:
        bridge.stop()


def records(store: redis.Redis, device: str) -> list[dict]:
    return [json.loads(raw) for raw in store.lrange(f"visualsearch:matches:{device}", 0, -1)]


def wait_records(store: redis.Redis, device: str, count: int, timeout: float = 60.0) -> list[dict]:
    return wait_for(
        lambda: found if len(found := records(store, device)) >= count else [], timeout, f"{device}: {count} records"
    )


def test_live_mode_runs_the_edge_loop_on_a_folder(
    stack: redis.Redis, tiny_catalog: TinyCatalog, mosquitto: MosquittoProcess, tmp_path: Path, capsys
) -> None:
    summary_file = tmp_path / "summary.json"
    code = main(
        [
            "simulate",
            "--folder",
            str(tiny_catalog.images_dir),
            "--fast",
            "--every-frame",
            "--model",
            str(tiny_catalog.model),
            "--broker",
            f"mqtt://127.0.0.1:{mosquitto.port}",
            "--device-id",
            "laptop-1",
            "--summary-json",
            str(summary_file),
        ]
    )
    assert code == 0
    summary = json.loads(summary_file.read_text())
    files = sorted(p.stem for p in tiny_catalog.images_dir.iterdir())
    assert summary["published"] == len(files) and summary["dropped"] == 0 and summary["errors"] == 0
    found = wait_records(stack, "laptop-1", len(files))
    by_seq = {r["seq"]: r for r in found}
    for offset, item in enumerate(files):
        record = by_seq[summary["first_seq"] + offset]
        # Identical pixels through the same prepare + model: the item itself is the top match.
        assert record["matches"][0]["id"] == item
        assert record["matches"][0]["score"] > 0.99
    assert "fps" in capsys.readouterr().err  # the live stats line


def test_live_mode_reports_bad_config_by_key(tiny_catalog: TinyCatalog, capsys) -> None:
    assert main(["simulate", "--folder", "x", "--webcam", "0", "--model", str(tiny_catalog.model)]) == 2
    assert "choose one source" in capsys.readouterr().err
    assert main(["simulate", "--video", "v.avi", "--set", "live.max_rate_hz=-1"]) == 2
    assert "live.max_rate_hz" in capsys.readouterr().err


def test_replay_many_devices_nothing_lost(
    stack: redis.Redis, tiny_catalog: TinyCatalog, mosquitto: MosquittoProcess
) -> None:
    cfg = ReplayConfig(
        devices=3,
        rate=400,
        count=300,
        index_dir=tiny_catalog.index_dir,
        mqtt=MqttConfig(port=mosquitto.port),
        device_prefix="load",
        first_seq=1000,
    )
    result = run_replay(cfg)
    assert result.enqueued == 300 and result.acknowledged == 300 and result.dropped == 0
    for device in cfg.device_ids():
        found = wait_records(stack, device, 100)
        assert sorted(r["seq"] for r in found) == list(range(1000, 1100))
        assert all(r["matches"] and r["matches"][0]["id"] in tiny_catalog.ids for r in found)


def test_replay_runs_do_not_reuse_sequence_numbers(tiny_catalog: TinyCatalog) -> None:
    from simulator.replay import ReplayConfig as Cfg
    from simulator.replay import initial_seq

    # The cloud's idempotency marker is (device, seq): a second run starting at 0 would be dropped as replays.
    cfg = Cfg(count=1, index_dir=tiny_catalog.index_dir)
    before = int(time.time() * 1000)
    first = initial_seq(cfg)
    time.sleep(0.01)
    assert before <= first < initial_seq(cfg)
    assert initial_seq(cfg.model_copy(update={"first_seq": 7})) == 7
