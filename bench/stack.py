"""The local stack end to end: frame-to-match latency with the default model, replay throughput, loss.

1. Latency: the sample camera video at its own 10 fps through the simulator (the edge loop, default model
   EfficientNet-Lite0 int8) → mosquitto → rule bridge → search → Redis. Per record: ``searched_at - ts``
   (capture to the record being written; ``searched_at`` is stamped just before the Redis MULTI) and the
   arrival of the record on ``visualsearch/+/matches`` (after Redis and the publish) — both from the
   capture timestamp.
2. Throughput: ``simulate --replay`` from 20 devices at a fixed rate through the whole stack; every message
   must end as exactly one record in Redis.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.table import print_table
from edge_component.config import MqttConfig
from simulator.demo import DEMO_MIN_SCORE, MODEL_DIR, MatchWatcher, ensure_index
from simulator.live import build_live_config, run_live
from simulator.replay import ReplayConfig, run_replay
from simulator.sample_data import ensure_sample_data
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up

REPO = Path(__file__).resolve().parent.parent
TARGET_P50_MS, TARGET_P95_MS, TARGET_RATE = 50.0, 100.0, 500.0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _latency(model: Path, sample, mqtt_port: int, redis_url: str, seconds: float, device: str) -> dict:
    watcher = MatchWatcher("127.0.0.1", mqtt_port, echo=False).start()
    arrivals: dict[int, float] = {}
    original = watcher._on_message

    def stamp(client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(ValueError, KeyError):
            arrivals[int(json.loads(message.payload)["seq"])] = time.time()
        original(client, userdata, message)

    watcher.client.on_message = stamp
    config = build_live_config(
        {
            "device_id": device,
            "source": {"kind": "video", "path": str(sample.video), "loop": True, "realtime": True},
            "model": {"path": str(model)},
            "live": {"max_rate_hz": 0, "change_threshold": None},
            "publish": {"kind": "mqtt", "mqtt": {"host": "127.0.0.1", "port": mqtt_port}},
        }
    )
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    run = run_live(config, stop, show_stats=False)
    timer.cancel()
    time.sleep(1.0)
    watcher.stop()
    store = redis.Redis.from_url(redis_url)
    records = [json.loads(r) for r in store.lrange(f"visualsearch:matches:{device}", 0, -1)]
    written = [(r["searched_at"] - r["ts"]) * 1000 for r in records]
    delivered = [(arrivals[r["seq"]] - r["ts"]) * 1000 for r in records if r["seq"] in arrivals]
    stages = {k: _pct([r["timing_ms"].get(k, 0.0) for r in records], 50) for k in ("prepare", "featurize", "search")}
    return {
        "frames": run.summary()["published"],
        "records": len(records),
        "written": written,
        "delivered": delivered,
        "stages": stages,
        "backend": run.summary()["backend"],
    }


def _throughput(index_dir: Path, mqtt_port: int, redis_url: str, rate: float, count: int) -> dict:
    cfg = ReplayConfig(
        devices=20,
        rate=rate,
        count=count,
        index_dir=index_dir,
        mqtt=MqttConfig(port=mqtt_port, max_inflight=100),
        device_prefix=f"load{int(rate)}",
    )
    result = run_replay(cfg, flush_timeout_s=60)
    store = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    records: list[dict] = []
    while time.monotonic() < deadline:
        total = sum(store.llen(f"visualsearch:matches:{d}") for d in cfg.device_ids())
        if total >= result.enqueued:
            break
        time.sleep(0.2)
    for device in cfg.device_ids():
        records += [json.loads(r) for r in store.lrange(f"visualsearch:matches:{device}", 0, -1)]
    unique = {(r["device_id"], r["seq"]) for r in records}
    span = max(r["searched_at"] for r in records) - min(r["ts"] for r in records) if records else float("nan")
    return {
        "sent": result.enqueued,
        "acked": result.acknowledged,
        "dropped": result.dropped,
        "stored": len(records),
        "unique": len(unique),
        "send_rate": result.achieved_rate,
        "stack_rate": len(records) / span if span and span > 0 else 0.0,
        "lag_ms": _pct([(r["searched_at"] - r["ts"]) * 1000 for r in records], 95),
    }


def run(quick: bool) -> None:
    from model.export.api import ensure_exported

    model = ensure_exported(MODEL_DIR, ("int8",))["int8"]
    sample = ensure_sample_data(REPO / ".state" / "sample")
    index_dir = ensure_index(sample, model, REPO / ".state" / "demo-index")
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        config = StackConfig(
            state_dir=Path(tmp) / "stack",
            mqtt_port=0,
            redis_port=0,
            http_port=0,
            index_dir=index_dir,
            catalog_dir=sample.catalog_dir,
            min_score=DEMO_MIN_SCORE,
            match_list_cap=100_000,
        )
        state, _ = stack_up(config)
        try:
            mqtt_port = next(s.port for s in state.services if s.name == "mosquitto")
            redis_url = state.urls["redis"]
            print_latency(_latency(model, sample, mqtt_port, redis_url, 12.0 if quick else 40.0, "bench-cam"))
            rates = [600.0] if quick else [300.0, 600.0, 1000.0]
            print_throughput(
                [
                    (rate, _throughput(index_dir, mqtt_port, redis_url, rate, int(rate * (4 if quick else 10))))
                    for rate in rates
                ]
            )
        finally:
            stack_down(config.state_dir)


def print_latency(lat: dict[str, Any]) -> None:
    rows = []
    for name, values in (
        ("capture → record written (searched_at)", lat["written"]),
        ("capture → record on …/matches", lat["delivered"]),
    ):
        p50, p95 = _pct(values, 50), _pct(values, 95)
        rows.append([name, len(values), p50, p95, p50 / TARGET_P50_MS, p95 / TARGET_P95_MS])
    print_table(
        f"Frame-to-match latency, local stack, sample video at 10 fps, {lat['backend']}",
        ["path", "records", "p50 ms", "p95 ms", "p50 / 50 ms target", "p95 / 100 ms target"],
        rows,
        note=f"device stages p50 ms: prepare {lat['stages']['prepare']:.2f}, featurize "
        f"{lat['stages']['featurize']:.2f}; cloud search p50 {lat['stages']['search']:.2f} ms. "
        f"{lat['frames']} frames published, {lat['records']} records. Ratios ≤ 1 meet the target.",
    )


def print_throughput(runs: list[tuple[float, dict[str, Any]]]) -> None:
    rows = [
        [
            f"{rate:.0f}",
            t["sent"],
            t["acked"],
            t["dropped"],
            t["stored"],
            t["sent"] - t["unique"],
            t["send_rate"],
            t["stack_rate"],
            t["stack_rate"] / TARGET_RATE,
            t["lag_ms"],
        ]
        for rate, t in runs
    ]
    print_table(
        "Replay through the whole stack: 20 devices → mosquitto → bridge → search → Redis (1280-d float16)",
        [
            "target msg/s",
            "sent",
            "acked",
            "dropped",
            "records",
            "lost",
            "send msg/s",
            "stack msg/s",
            "stack / 500 target",
            "p95 capture→record ms",
        ],
        rows,
        note="stack msg/s = records / (last searched_at − first ts). lost = sent − distinct (device, seq) "
        "records in Redis; must be 0.",
    )
