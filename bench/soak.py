"""Soak: replay load through the whole local stack for minutes; memory, latency and list caps over time.

mosquitto, redis-server, the rule bridge and the HTTP API server run as separate processes (the stack's
own launch code); ``visual-search simulate --replay`` is one more process publishing at a fixed rate
through the edge publisher. While it runs, this process samples match records from Redis (latency =
``searched_at - ts``, device send → stored), polls the API like the web app, and reads each process's
RSS from ``/proc/<pid>/status``. Figures are reported per third of the run, so drift shows.

``python -m bench soak`` (a few minutes) or ``python -m bench soak --quick`` (~20 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import redis

from bench.table import print_table
from simulator.chaos import build_fixture
from simulator.stack.processes import MosquittoProcess, PythonServiceProcess, RedisProcess, free_port

DEVICES = 4
MATCH_LIST_CAP = 100


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(quick: bool) -> None:
    duration = 20.0 if quick else float(os.environ.get("SOAK_SECONDS", "240"))
    rate = float(os.environ.get("SOAK_RATE", "150" if quick else "250"))
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    _model, index_dir, _camera = build_fixture(root / "fixture")
    broker = MosquittoProcess(workdir=root / "mosquitto").start()
    store = RedisProcess(workdir=root / "redis").start()
    env = {
        "VS_INDEX_DIR": str(index_dir),
        "VS_REDIS_URL": store.url,
        "VS_MATCH_LIST_CAP": str(MATCH_LIST_CAP),
        "VS_MATCH_PUBLISH": "none",
        "VS_TOP_K": "3",
    }
    bridge = PythonServiceProcess(
        name="bridge",
        workdir=root / "bridge",
        module="simulator.stack.bridge",
        args=["--mqtt-port", str(broker.port), "--ready-file", str(root / "bridge" / "ready")],
        ready_file=root / "bridge" / "ready",
        env=env,
    ).start(timeout=60)
    http_port = free_port()
    http = PythonServiceProcess(
        name="http",
        workdir=root / "http",
        port=http_port,
        module="simulator.stack.http_server",
        args=["--port", str(http_port)],
        health_path="/api/health",
        env=env,
    ).start(timeout=60)
    sim_log = open(root / "simulate.log", "wb")  # noqa: SIM115 - closed below
    simulate = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "simulate",
            "--replay",
            "--devices",
            str(DEVICES),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--index-dir",
            str(index_dir),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--device-id",
            "soak",
        ],
        stdout=subprocess.PIPE,
        stderr=sim_log,
    )
    procs = {"mosquitto": broker.pid, "redis-server": store.pid, "bridge": bridge.pid, "http": http.pid}
    procs["simulator"] = simulate.pid
    client = redis.Redis(host=store.host, port=store.port)
    devices = [f"soak-{i:03d}" for i in range(DEVICES)]
    latencies: dict[tuple[str, int], tuple[float, float]] = {}
    api_ms: list[tuple[float, float]] = []
    rss_start: dict[str, int | None] = {}
    rss_end: dict[str, int | None] = {}
    max_len = 0
    started = time.time()
    warm_at = started + min(5.0, duration / 4)
    stop = threading.Event()

    def poll_api() -> None:
        url = f"http://127.0.0.1:{http_port}/api/devices/{devices[0]}/matches?n=10"
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                api_ms.append((time.time() - started, (time.perf_counter() - t0) * 1000))
            except OSError:
                pass
            stop.wait(0.2)

    poller = threading.Thread(target=poll_api, daemon=True)
    poller.start()
    try:
        while simulate.poll() is None:
            now = time.time()
            if not rss_start and now >= warm_at:
                rss_start = {name: rss_kb(pid) for name, pid in procs.items()}
            pipe = client.pipeline(transaction=False)
            for device in devices:
                pipe.lrange(f"visualsearch:matches:{device}", 0, -1)
            for device, raws in zip(devices, pipe.execute(), strict=True):
                max_len = max(max_len, len(raws))
                for raw in raws:
                    record = json.loads(raw)
                    latencies.setdefault(
                        (device, record["seq"]), (record["ts"] - started, (record["searched_at"] - record["ts"]) * 1000)
                    )
            # A process that just exited reads as None (a zombie has no VmRSS): keep its last real figure.
            rss_end.update({name: kb for name, pid in procs.items() if (kb := rss_kb(pid)) is not None})
            time.sleep(0.3)
        summary = json.loads(simulate.stdout.read() if simulate.stdout else b"{}")
        time.sleep(2.0)  # the bridge works through what is queued
        stored = sum(1 for _ in client.scan_iter(match="visualsearch:seen:*", count=5000))
        redis_mem = int(client.info("memory")["used_memory"])
        lengths = [client.llen(f"visualsearch:matches:{d}") for d in devices]
    finally:
        stop.set()
        if simulate.poll() is None:
            simulate.kill()
        sim_log.close()
        for proc in (http, bridge, store, broker):
            proc.stop()

    elapsed = summary.get("elapsed_s") or duration
    print_table(
        f"soak: replay {DEVICES} devices at {rate:g} msg/s for {elapsed:.0f} s through mosquitto → bridge → redis",
        ["sent", "acked by broker", "dropped", "stored (markers)", "throughput msg/s", "sender behind s"],
        [
            [
                summary.get("enqueued"),
                summary.get("acknowledged"),
                summary.get("dropped"),
                stored,
                round(stored / elapsed, 1),
                summary.get("behind_s"),
            ]
        ],
        "throughput = distinct stored messages / replay seconds; 'behind' > 0 means the sender could not keep the rate.",
    )
    thirds = []
    for k in range(3):
        lo, hi = elapsed * k / 3, elapsed * (k + 1) / 3
        lat = [ms for t, ms in latencies.values() if lo <= t < hi]
        api = [ms for t, ms in api_ms if lo <= t < hi]
        thirds.append(
            [f"{lo:.0f}-{hi:.0f} s", len(lat), _pct(lat, 50), _pct(lat, 99), len(api), _pct(api, 50), _pct(api, 99)]
        )
    print_table(
        "soak: latency by third of the run",
        ["window", "records sampled", "e2e p50 ms", "e2e p99 ms", "API polls", "API p50 ms", "API p99 ms"],
        thirds,
        "e2e = searched_at - ts (device send → search done, one clock); records sampled from the capped lists.",
    )
    rows = []
    for name in procs:
        start_kb, end_kb = rss_start.get(name), rss_end.get(name)
        growth = (end_kb - start_kb) / 1024 if start_kb and end_kb else None
        rows.append([name, _mb(start_kb), _mb(end_kb), growth])
    print_table(
        "soak: resident memory (VmRSS) after warm-up → end",
        ["process", "RSS start MB", "RSS end MB", "growth MB"],
        rows,
        f"redis used_memory at the end {redis_mem / 1e6:.1f} MB, of which ~{stored} idempotency markers (TTL 24 h, "
        f"so Redis grows with traffic until they expire). Match lists: longest seen {max_len}, at the end "
        f"{max(lengths)} (cap {MATCH_LIST_CAP}).",
    )


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb else None
