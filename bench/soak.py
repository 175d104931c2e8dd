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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


@dataclass
class SoakStack:
    """The stack's processes, each started by the stack's own launch code."""

    index_dir: Path
    broker: MosquittoProcess
    store: RedisProcess
    bridge: PythonServiceProcess
    http: PythonServiceProcess
    http_port: int

    def pids(self) -> dict[str, int | None]:
        return {
            "mosquitto": self.broker.pid,
            "redis-server": self.store.pid,
            "bridge": self.bridge.pid,
            "http": self.http.pid,
        }

    def stop(self) -> None:
        for proc in (self.http, self.bridge, self.store, self.broker):
            proc.stop()


@dataclass
class Samples:
    """What the sampler saw while the replay ran (times relative to ``started``)."""

    started: float
    latencies: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    """(device, seq) → (capture time, e2e ms), first sighting only."""
    api_ms: list[tuple[float, float]] = field(default_factory=list)
    rss_start: dict[str, int | None] = field(default_factory=dict)
    rss_end: dict[str, int | None] = field(default_factory=dict)
    max_len: int = 0


def start_stack(root: Path) -> SoakStack:
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
    return SoakStack(index_dir, broker, store, bridge, http, http_port)


def start_replay(stack: SoakStack, rate: float, duration: float, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``simulate --replay``: DEVICES devices at ``rate`` msg/s through the edge publisher; prints its summary."""
    command = ["simulate", "--replay", "--devices", str(DEVICES), "--rate", str(rate), "--duration", str(duration)]
    command += ["--index-dir", str(stack.index_dir), "--broker", f"mqtt://127.0.0.1:{stack.broker.port}"]
    command += ["--device-id", "soak"]
    return subprocess.Popen([sys.executable, "-m", "simulator", *command], stdout=subprocess.PIPE, stderr=log)


def poll_api(url: str, samples: Samples, stop: threading.Event) -> None:
    """Like the web app: one API read every 0.2 s, timed."""
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                resp.read()
            samples.api_ms.append((time.time() - samples.started, (time.perf_counter() - t0) * 1000))
        except OSError:
            pass
        stop.wait(0.2)


def sample_once(client: redis.Redis, devices: list[str], procs: dict[str, int | None], samples: Samples) -> None:
    """Every record in the capped lists (first sighting gives its latency) and every process's RSS."""
    pipe = client.pipeline(transaction=False)
    for device in devices:
        pipe.lrange(f"visualsearch:matches:{device}", 0, -1)
    for device, raws in zip(devices, pipe.execute(), strict=True):
        samples.max_len = max(samples.max_len, len(raws))
        for raw in raws:
            record = json.loads(raw)
            samples.latencies.setdefault(
                (device, record["seq"]),
                (record["ts"] - samples.started, (record["searched_at"] - record["ts"]) * 1000),
            )
    # A process that just exited reads as None (a zombie has no VmRSS): keep its last real figure.
    samples.rss_end.update({name: kb for name, pid in procs.items() if (kb := rss_kb(pid)) is not None})


def run(quick: bool) -> None:
    duration = 20.0 if quick else float(os.environ.get("SOAK_SECONDS", "240"))
    rate = float(os.environ.get("SOAK_RATE", "150" if quick else "250"))
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    stack = start_stack(root)
    sim_log = open(root / "simulate.log", "wb")  # noqa: SIM115 - closed below
    simulate = start_replay(stack, rate, duration, sim_log)
    procs = {**stack.pids(), "simulator": simulate.pid}
    client = redis.Redis(host=stack.store.host, port=stack.store.port)
    devices = [f"soak-{i:03d}" for i in range(DEVICES)]
    samples = Samples(started=time.time())
    warm_at = samples.started + min(5.0, duration / 4)
    stop = threading.Event()
    url = f"http://127.0.0.1:{stack.http_port}/api/devices/{devices[0]}/matches?n=10"
    threading.Thread(target=poll_api, args=(url, samples, stop), daemon=True).start()
    try:
        while simulate.poll() is None:
            if not samples.rss_start and time.time() >= warm_at:
                samples.rss_start = {name: rss_kb(pid) for name, pid in procs.items()}
            sample_once(client, devices, procs, samples)
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
        stack.stop()
    elapsed = summary.get("elapsed_s") or duration
    print_throughput(summary, rate, elapsed, stored)
    print_latency_thirds(samples, elapsed)
    print_memory(samples, list(procs), redis_mem, stored, max(lengths))


def print_throughput(summary: dict[str, Any], rate: float, elapsed: float, stored: int) -> None:
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


def print_latency_thirds(samples: Samples, elapsed: float) -> None:
    thirds = []
    for k in range(3):
        lo, hi = elapsed * k / 3, elapsed * (k + 1) / 3
        lat = [ms for t, ms in samples.latencies.values() if lo <= t < hi]
        api = [ms for t, ms in samples.api_ms if lo <= t < hi]
        thirds.append(
            [f"{lo:.0f}-{hi:.0f} s", len(lat), _pct(lat, 50), _pct(lat, 99), len(api), _pct(api, 50), _pct(api, 99)]
        )
    print_table(
        "soak: latency by third of the run",
        ["window", "records sampled", "e2e p50 ms", "e2e p99 ms", "API polls", "API p50 ms", "API p99 ms"],
        thirds,
        "e2e = searched_at - ts (device send → search done, one clock); records sampled from the capped lists.",
    )


def print_memory(samples: Samples, names: list[str], redis_mem: int, stored: int, longest_at_end: int) -> None:
    rows = []
    for name in names:
        start_kb, end_kb = samples.rss_start.get(name), samples.rss_end.get(name)
        growth = (end_kb - start_kb) / 1024 if start_kb and end_kb else None
        rows.append([name, _mb(start_kb), _mb(end_kb), growth])
    print_table(
        "soak: resident memory (VmRSS) after warm-up → end",
        ["process", "RSS start MB", "RSS end MB", "growth MB"],
        rows,
        f"redis used_memory at the end {redis_mem / 1e6:.1f} MB, of which ~{stored} idempotency markers (TTL 24 h, "
        f"so Redis grows with traffic until they expire). Match lists: longest seen {samples.max_len}, at the end "
        f"{longest_at_end} (cap {MATCH_LIST_CAP}).",
    )


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb else None
