"""Capacity inputs of docs/scale.md, measured: what one feature message costs the search and its Redis.

1. **Handler**: ``SearchService.handle_feature_event`` on IoT-rule-shaped events from 50 devices (replay-style:
   noisy copies of catalog vectors, float16 on the wire as the edge sends them) against a realistic index —
   spectral 100k items with its ``--index auto`` kind, and with ``BENCH_CAPACITY_1M=1`` also 1M items (its
   ``auto`` kind) — into a real redis-server: CPU ms per message of the handler and of redis-server,
   wall ms, and the k-NN search alone.
2. **Redis**: commands per message (``INFO commandstats``), bytes per idempotency marker (``used_memory`` growth
   once every match list is at its cap), per stored match record and per device list at the cap
   (``MEMORY USAGE``).
3. **Wire**: bytes of a feature message (float16 and float32) and of a match record, in IoT Core's 5 KB
   metering units.
4. **Replay through the local stack**: ``visual-search simulate --replay`` → mosquitto → rule bridge → Redis at
   a fixed rate: CPU per message of the bridge, redis-server and mosquitto processes (``/proc``).

``python -m bench capacity`` (``--quick``: 1,000 handler messages, no stack replay).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.index_compact import QUERIES, Candidate, built
from bench.table import print_table
from bench.vectors import Spectrum, real_view_pairs, spectral_set

DEVICES = 50
REPLAY_MESSAGES = 6_000
LIST_CAP = 100
MODEL_ID = "bench-spectral"
IOT_UNIT = 5 * 1024
INPUTS = Path(__file__).resolve().parent.parent / ".cache" / "bench" / "capacity.json"


def auto_candidate(n: int) -> Candidate:
    """What ``catalog index --index auto`` builds for ``n`` 1280-d items (cached with bench.index_compact's)."""
    from cloud_lambda.index.choice import choose

    kind, params = choose(n, 1280)
    return Candidate(f"{kind} (auto at {n:,})", kind, params)


def _proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def catalog_root(n: int, candidate: Candidate) -> tuple[Path, np.ndarray]:
    """An index root holding the cached bench index of ``n`` spectral items as model ``bench-spectral`` (with a
    metadata.sqlite of realistic records), and a sample of item vectors to replay."""
    from cloud_lambda.metadata.base import ItemRecord
    from cloud_lambda.metadata.sqlite_store import SqliteStore

    items, residuals = real_view_pairs(int(os.environ.get("BENCH_INDEX_REAL", "20000")), QUERIES)
    data = spectral_set(n, Spectrum.cached(items, residuals), QUERIES)
    folder = built(data, f"spectral-{n}", candidate).folder
    if not (folder / "metadata.sqlite").exists():
        ids = json.loads((folder / "ids.json").read_text())
        store = SqliteStore(folder / "metadata.sqlite.tmp")
        store.put_many(
            ItemRecord(
                id=item_id,
                model_id=MODEL_ID,
                title=f"Stoneware mug, matte glaze, 350 ml — colour {i % 17}",
                image_url=f"https://cdn.example.com/catalog/images/{item_id}.jpg",
                extra={"price": round(5 + (i % 400) / 10, 2), "brand": f"brand-{i % 91}"},
            )
            for i, item_id in enumerate(ids)
        )
        store.close()
        (folder / "metadata.sqlite.tmp").replace(folder / "metadata.sqlite")
    root = Path(tempfile.mkdtemp(prefix="capacity-root-"))
    (root / MODEL_ID).symlink_to(folder)
    rng = np.random.default_rng(3)
    sample = np.asarray(data.base[np.sort(rng.choice(n, 4096, replace=False))], dtype=np.float32)
    return root, sample


def events(sample: np.ndarray, count: int, dtype: str = "float16") -> list[dict[str, Any]]:
    """IoT-rule events: noisy copies of catalog vectors (as `simulate --replay` sends) from DEVICES devices."""
    from model.contracts.wire import FeatureMessage, encode

    rng = np.random.default_rng(4)
    picks = sample[rng.integers(0, len(sample), count)]
    noisy = picks + rng.standard_normal(picks.shape).astype(np.float32) * (0.05 / np.sqrt(picks.shape[1]))
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    now = time.time()
    out = []
    for k, vector in enumerate(noisy):
        device = f"cam-{k % DEVICES:04d}"
        message = FeatureMessage(device, 10**6 + k, now, MODEL_ID, vector, dtype=dtype, timing_ms={"featurize": 5.0})  # type: ignore[arg-type]
        event = json.loads(encode(message))
        event["topic_device"] = device
        out.append(event)
    return out


def bench_handler(
    root: Path, sample: np.ndarray, label: str, count: int, rows: list[list[Any]], redis_rows: list, ef: int | None
) -> None:  # type: ignore[type-arg]
    import redis

    from cloud_lambda.search.service import SearchService
    from cloud_lambda.settings import CloudSettings
    from simulator.stack.processes import RedisProcess

    stream = events(sample, count + DEVICES * LIST_CAP)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(workdir=Path(tmp) / "redis").start()
        try:
            settings = CloudSettings.build(
                index_dir=str(root), redis_url=server.url, match_list_cap=LIST_CAP, top_k=5, hnsw_ef_search=ef
            )
            service = SearchService(settings)
            client = redis.Redis.from_url(server.url)
            fill, measured = stream[: DEVICES * LIST_CAP], stream[DEVICES * LIST_CAP :]
            for event in fill:  # every device's list at its cap: from here on only markers grow
                service.handle_feature_event(event)
            memory0 = int(client.info("memory")["used_memory"])
            calls0 = _calls(client)
            cpu0, rcpu0, wall0 = time.process_time(), _proc_cpu(server.pid), time.perf_counter()
            statuses = [service.handle_feature_event(event)["status"] for event in measured]
            wall = time.perf_counter() - wall0
            cpu, rcpu = time.process_time() - cpu0, _proc_cpu(server.pid) - rcpu0
            assert statuses.count("accepted") == len(measured), "bench events must all be accepted"
            commands = (_calls(client) - calls0) / len(measured)
            marker_bytes = (int(client.info("memory")["used_memory"]) - memory0) / len(measured)
            search_ms = _search_only(service, sample)
            list_bytes = int(client.memory_usage("visualsearch:matches:cam-0000") or 0)
            record_bytes = float(np.mean([len(r) for r in client.lrange("visualsearch:matches:cam-0000", 0, -1)]))
            n = len(measured)
            rows.append([label, n, cpu / n * 1e3, rcpu / n * 1e3, wall / n * 1e3, search_ms, n / (cpu + rcpu)])
            redis_rows.append([label, commands, marker_bytes, record_bytes, list_bytes])
            service.metadata.close()
        finally:
            server.stop()


def _calls(client: Any) -> int:
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


def _search_only(service: Any, sample: np.ndarray) -> float:
    index = service.catalogs.get(MODEL_ID).catalog.index
    started = time.process_time()
    for vector in sample[:1000]:
        index.search(vector[None], 5)
    return (time.process_time() - started) / 1000 * 1e3


def wire_rows(sample: np.ndarray, record_bytes: float) -> list[list[Any]]:
    rows = []
    for dtype in ("float16", "float32"):
        size = len(json.dumps({k: v for k, v in events(sample, 1, dtype)[0].items() if k != "topic_device"}))
        topic = len("visualsearch/cam-0000/features")
        rows.append([f"feature message, {dtype} 1280-d", size + topic, int(np.ceil((size + topic) / IOT_UNIT))])
    topic = len("visualsearch/cam-0000/matches")
    rows.append(
        [
            "match record (top 5 + metadata)",
            round(record_bytes) + topic,
            int(np.ceil((record_bytes + topic) / IOT_UNIT)),
        ]
    )
    return rows


def bench_stack_replay(root: Path, sample: np.ndarray, count: int, rate: float) -> list[list[Any]]:
    """The cloud side's CPU per message when ``simulate --replay`` publishes through the real local stack."""
    import redis

    from simulator.stack.config import StackConfig
    from simulator.stack.manager import stack_down, stack_up

    # Hidden names inside the temporary root: the search lists only model-id folders as indexes.
    vectors = root / ".replay.npy"
    np.save(vectors, sample)
    config = StackConfig(state_dir=root / ".stack", mqtt_port=0, redis_port=0, http_port=0, index_dir=root)
    state, _ = stack_up(config)
    try:
        pids = {name: state.service(name).pid for name in ("bridge", "redis", "mosquitto")}  # type: ignore[union-attr]
        before = {name: _proc_cpu(pid) for name, pid in pids.items()}
        mqtt = state.service("mosquitto")
        assert mqtt is not None
        cmd = [
            sys.executable,
            "-m",
            "model.hub",
            "simulate",
            "--replay",
            "--vectors",
            str(vectors),
            "--model-id",
            MODEL_ID,
        ]
        cmd += [
            "--devices",
            "50",
            "--rate",
            str(rate),
            "--count",
            str(count),
            "--broker",
            f"mqtt://127.0.0.1:{mqtt.port}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True)
        summary = json.loads(done.stdout)
        client = redis.Redis.from_url(state.urls["redis"]) if "redis" in state.urls else None
        _wait_stored(client, count)
        after = {name: _proc_cpu(pid) for name, pid in pids.items()}
    finally:
        stack_down(config.state_dir)
    per = {name: (after[name] - before[name]) / count * 1e3 for name in pids}
    return [[count, summary.get("rate"), per["bridge"], per["redis"], per["mosquitto"], sum(per.values())]]


def _wait_stored(client: Any, count: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while client is not None and time.monotonic() < deadline:
        if sum(1 for _ in client.scan_iter(match="visualsearch:seen:*", count=5000)) >= count:
            return
        time.sleep(1.0)


def save_inputs(handler: list[Any], redis_row: list[Any], wire: list[list[Any]]) -> None:
    """The largest catalog's per-message figures, for ``python -m bench cost`` (docs/scale.md)."""
    inputs = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "index": handler[0],
        "handler_cpu_ms": handler[2],
        "redis_cpu_ms": handler[3],
        "handler_wall_ms": handler[4],
        "knn_cpu_ms": handler[5],
        "redis_commands": redis_row[1],
        "marker_bytes": redis_row[2],
        "record_bytes": redis_row[3],
        "list_bytes": redis_row[4],
        "feature_bytes": wire[0][1],
        "feature_units": wire[0][2],
        "match_bytes": wire[-1][1],
        "match_units": wire[-1][2],
    }
    INPUTS.parent.mkdir(parents=True, exist_ok=True)
    INPUTS.write_text(json.dumps(inputs, indent=2))
    print(f"(inputs of `python -m bench cost` written to {INPUTS})")


def run(quick: bool) -> None:
    from cloud_lambda.logs import get_logger

    for name in ("visualsearch.cloud", "visualsearch.catalog"):
        get_logger(name).setLevel(logging.WARNING)
    count = 1_000 if quick else 4_000
    sizes = [100_000] + ([1_000_000] if os.environ.get("BENCH_CAPACITY_1M") == "1" else [])
    rows: list[list[Any]] = []
    redis_rows: list[list[Any]] = []
    replay_root: Path | None = None
    sample = np.zeros((0, 1280), np.float32)
    for n in sizes:
        candidate = auto_candidate(n)
        root, sample = catalog_root(n, candidate)
        atexit.register(shutil.rmtree, root, True)  # the temporary root; the cached index it links to stays
        ef = candidate.params.get("ef_search")
        label = f"{n:,} items, {candidate.kind} ef_search={ef}"
        bench_handler(root, sample, label, count, rows, redis_rows, ef)
        replay_root = replay_root or root
    print_table(
        "Search handler per feature message (1280-d float16 message, top-5 + metadata join, Redis push script)",
        [
            "index",
            "messages",
            "handler CPU ms",
            "redis-server CPU ms",
            "wall ms",
            "k-NN alone CPU ms",
            "messages/CPU-s",
        ],
        rows,
        "CPU ms are per message on this machine's cores (time.process_time of the handler; /proc of redis-server);"
        f" wall depends on the machine's load (now {os.getloadavg()[0]:.1f}). {DEVICES} devices, lists at cap {LIST_CAP}.",
    )
    print_table(
        "Redis per feature message",
        [
            "index",
            "commands executed",
            "bytes per marker (seen key)",
            "bytes per record",
            "bytes per device list at cap",
        ],
        redis_rows,
        "commands: INFO commandstats calls (one EVALSHA runs SET NX, LPUSH, LTRIM, EXPIRE, ZADD, 2×ZREMRANGE inside);"
        " marker bytes: used_memory growth per message once lists are at their cap.",
    )
    wire = wire_rows(sample, float(redis_rows[0][3]))
    print_table("Wire sizes and IoT Core metering (5 KB units)", ["payload", "bytes (+topic)", "units"], wire)
    save_inputs(rows[-1], redis_rows[-1], wire)
    if not quick and replay_root is not None:  # last: the handler's figures are printed and saved already
        replay = bench_stack_replay(replay_root, sample, count=REPLAY_MESSAGES, rate=200.0)
        print_table(
            "simulate --replay through the local stack (mosquitto → rule bridge → Redis), CPU ms per message",
            ["messages", "sent msg/s", "bridge", "redis-server", "mosquitto", "cloud side total"],
            replay,
            "bridge = the Lambda's stand-in (paho receive + JSON + SearchService); per message over the whole run.",
        )
