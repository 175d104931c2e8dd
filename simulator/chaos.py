"""Fault injection on the local stack: ``make chaos`` (``python -m simulator.chaos``).

A real edge loop (folder camera → tiny ONNX featurizer → MQTT publisher with its bounded queue) publishes
at a steady rate to a real mosquitto; the real rule bridge process (``simulator.stack.bridge``) runs the
search handler and writes to a real redis-server. While it runs, a fixed-seed schedule kills and restarts
mosquitto, redis-server, the bridge and the camera (its folder disappears; the source watchdog reopens it).

Afterwards every sequence number the device produced is accounted for from Redis itself:

- **sent**: sequence numbers the edge loop handed to its publisher;
- **dropped**: the outbound queue's own drop counter (oldest dropped when full);
- **stored**: distinct seqs with an idempotency marker ``visualsearch:seen:{device}:{seq}`` in Redis;
- **records / duplicate records**: match-list entries, and entries beyond one per seq (must be 0);
- **duplicate deliveries**: messages the search handler saw again and refused as duplicates (bridge logs);
- **lost** = sent − dropped − stored. Within the queue's capacity it must be 0; beyond it, lost = dropped.

Two scenarios run: ``within capacity`` (a queue far larger than any outage) and ``over capacity`` (a
small queue and a long broker outage, so drops are forced and must match the loss exactly). Besides the
kills, the store misbehaves twice: it refuses writes for 10 s (``maxmemory`` reached) and is down for 30 s,
both longer than the bridge's retry budget, so what the broker delivered must wait in the bridge's spool.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
from tqdm import tqdm

from model.logs import log_event
from simulator.stack.processes import ManagedProcess, MosquittoProcess, PythonServiceProcess, RedisProcess

log = logging.getLogger(__name__)

FAULT_KINDS = ("mosquitto", "redis", "bridge", "camera", "store-refuses", "store-down")
LONG_FAULTS = {"store-refuses": 10.0, "store-down": 30.0}
"""Faults with a fixed length, each once per run: Redis refusing writes (``maxmemory`` reached) for 10 s, and
Redis down for 30 s, far past the bridge's 4.2 s retry budget (the spool must carry both)."""
DEVICE_ID = "chaos-cam"


class DurableRedis(RedisProcess):
    """redis-server whose acknowledged writes survive SIGKILL (AOF, fsync on every write).

    ElastiCache keeps data across a node failover through its replica; a single local process needs the
    append-only file to stand in for that, otherwise a kill would erase what was stored and "lost" would
    measure the stand-in, not the system.
    """

    def prepare(self) -> None:
        super().prepare()
        conf = self.workdir / "redis.conf"
        conf.write_text(conf.read_text() + "appendfsync always\n")


@dataclass
class Fault:
    at_s: float
    kind: str
    down_s: float
    recovered_after_s: float | None = None
    error: str | None = None


@dataclass
class ScenarioResult:
    name: str
    capacity: int
    duration_s: float
    rate_hz: float
    faults: list[Fault] = field(default_factory=list)
    sent: int = 0
    acknowledged: int = 0
    dropped: int = 0
    stored: int = 0
    records: int = 0
    duplicate_records: int = 0
    duplicate_deliveries: int = 0
    spooled: int = 0
    lost: int = 0
    lost_seqs: list[int] = field(default_factory=list)
    source_reconnects: int = 0
    ok: bool = False
    verdict: str = ""

    def fault_summary(self) -> str:
        counts = {kind: sum(1 for f in self.faults if f.kind == kind) for kind in FAULT_KINDS}
        return " ".join(f"{k}×{n}" for k, n in counts.items() if n)


def schedule(
    seed: int, duration_s: float, kinds: tuple[str, ...], count: int, long_s: dict[str, float] | None = None
) -> list[Fault]:
    """``count`` faults at random moments (fixed seed), at least 2 s apart, none in the first/last 2 s.

    Every kind occurs once; the extra faults are short ones (a long fault twice would only lengthen the run).
    """
    rng = random.Random(seed)
    lengths = {**LONG_FAULTS, **(long_s or {})}
    start, end = 2.0, max(2.5, duration_s - 3.0)
    short = [k for k in kinds if k not in lengths] or list(kinds)
    faults: list[Fault] = []
    for i in range(count):
        kind = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(short)
        down = lengths.get(kind) or round(rng.uniform(0.3, 2.0), 2)
        faults.append(Fault(at_s=rng.uniform(start, end), kind=kind, down_s=down))
    faults.sort(key=lambda f: f.at_s)
    for prev, nxt in itertools.pairwise(faults):  # keep them apart so each recovery is measured
        nxt.at_s = max(nxt.at_s, prev.at_s + prev.down_s + 2.0)
    for f in faults:
        f.at_s = round(f.at_s, 2)
    return faults


class Stack:
    """mosquitto + durable redis-server + the rule bridge process, on free loopback ports under ``root``."""

    def __init__(self, root: Path, index_dir: Path) -> None:
        self.root = root
        # As `stack up` runs it, plus a save after every change: with the default once-a-second save a SIGKILL
        # loses what the broker acknowledged in its last second (documented in docs/reliability.md), which
        # IoT Core does not; like DurableRedis, the stand-in must not be what "lost" measures.
        self.broker = MosquittoProcess(
            workdir=root / "mosquitto", persistence=True, extra_config="autosave_on_changes true"
        )
        self.redis = DurableRedis(workdir=root / "redis", appendonly=True)
        self.index_dir = index_dir
        self.bridge: PythonServiceProcess | None = None

    def start(self) -> None:
        self.broker.start()
        self.redis.start()
        self.bridge = PythonServiceProcess(
            name="bridge",
            workdir=self.root / "bridge",
            module="simulator.stack.bridge",
            args=["--mqtt-port", str(self.broker.port), "--ready-file", str(self.root / "bridge" / "ready")],
            ready_file=self.root / "bridge" / "ready",
            env={
                "VS_INDEX_DIR": str(self.index_dir),
                "VS_REDIS_URL": self.redis.url,
                "VS_MATCH_LIST_CAP": "100000",  # large enough to hold every record of a run: duplicates stay visible
                "VS_MATCH_PUBLISH": "none",
                "VS_TOP_K": "3",
            },
        )
        self.bridge.start(timeout=60)

    def process(self, kind: str) -> ManagedProcess:
        if kind == "mosquitto":
            return self.broker
        if kind == "redis":
            return self.redis
        assert self.bridge is not None
        return self.bridge

    def stop(self) -> None:
        for proc in (self.bridge, self.redis, self.broker):
            if proc is not None:
                proc.stop()


def build_fixture(root: Path) -> tuple[Path, Path, Path]:
    """(tiny model, catalog index folder, camera folder of frames) made in code: nothing downloaded."""
    from cloud_lambda.catalog.layout import write_catalog
    from cloud_lambda.metadata.base import ItemRecord
    from model.featurizer import Featurizer
    from model.testing import build_tiny_model

    model = build_tiny_model(root / "model" / "tiny.onnx")
    featurizer = Featurizer(model, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    frames_dir = root / "camera"
    frames_dir.mkdir(parents=True)
    images = []
    for i in range(8):
        image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(frames_dir / f"frame-{i:02d}.png"), image)
        images.append(image)
    ids = [f"item-{i}" for i in range(len(images))]
    vectors = np.stack([featurizer.featurize_frame(img) for img in images])
    write_catalog(
        root / "index",
        model_id=featurizer.model_id,
        dim=featurizer.dim,
        input_size=featurizer.input_size,
        ids=ids,
        vectors=vectors,
        records=[ItemRecord(id=i, model_id=featurizer.model_id, title=i, image_url="", extra={}) for i in ids],
        index_kind="exact",
        index_params={},
        summary={"indexed": len(ids)},
        report_lines=[],
    )
    return model, root / "index", frames_dir


def inject(fault: Fault, stack: Stack, camera_dir: Path) -> None:
    """Kill (SIGKILL, no goodbye) or take away, wait ``down_s``, bring back; record how long recovery took."""
    started = time.monotonic()
    try:
        if fault.kind == "camera":
            hidden = camera_dir.with_name(camera_dir.name + ".gone")
            camera_dir.rename(hidden)
            time.sleep(fault.down_s)
            hidden.rename(camera_dir)
        elif fault.kind == "store-refuses":
            # maxmemory below what is used, policy noeviction (the default): Redis answers, every write is OOM.
            admin = redis.Redis(host=stack.redis.host, port=stack.redis.port)
            admin.config_set("maxmemory", "1")
            time.sleep(fault.down_s)
            admin.config_set("maxmemory", "0")
        elif fault.kind == "store-down":
            stack.redis.kill()
            time.sleep(fault.down_s)
            stack.redis.start(timeout=60)
        else:
            proc = stack.process(fault.kind)
            proc.kill()
            time.sleep(fault.down_s)
            proc.start(timeout=60)
    except Exception as exc:  # a fault that could not be undone is reported, and the run goes on
        fault.error = f"{type(exc).__name__}: {exc}"
        log_event(log, "fault_recovery_failed", logging.ERROR, fault=asdict(fault))
    fault.recovered_after_s = round(time.monotonic() - started, 2)


def count_bridge_lines(log_path: Path, marker: str) -> int:
    if not log_path.exists():
        return 0
    return sum(1 for line in log_path.read_text(errors="replace").splitlines() if marker in line)


def count_bridge_duplicates(log_path: Path) -> int:
    return count_bridge_lines(log_path, '"feature_duplicate"')


def account(result: ScenarioResult, client: redis.Redis, first_seq: int, last_seq: int) -> None:
    """Per-seq truth from Redis: idempotency markers and match-list records."""
    stored: set[int] = set()
    prefix = f"visualsearch:seen:{DEVICE_ID}:"
    for key in client.scan_iter(match=prefix + "*", count=5000):
        seq = int(key.decode().removeprefix(prefix))
        if first_seq <= seq <= last_seq:
            stored.add(seq)
    records = [json.loads(raw)["seq"] for raw in client.lrange(f"visualsearch:matches:{DEVICE_ID}", 0, -1)]
    records = [s for s in records if first_seq <= s <= last_seq]
    result.stored = len(stored)
    result.records = len(records)
    result.duplicate_records = len(records) - len(set(records))
    missing = sorted(set(range(first_seq, last_seq + 1)) - stored)
    result.lost = len(missing)
    result.lost_seqs = missing[:20]


def run_scenario(
    name: str,
    root: Path,
    model: Path,
    index_dir: Path,
    camera_dir: Path,
    *,
    capacity: int,
    duration_s: float,
    rate_hz: float,
    faults: list[Fault],
    progress: bool = True,
) -> ScenarioResult:
    """One scenario: the stack up, the real edge loop publishing into it, the faults on schedule, then the
    accounting once everything sent has settled."""
    from edge_component.loop import EdgeLoop
    from edge_component.publishers import create_publisher
    from edge_component.sources import create_source
    from model.featurizer import Featurizer

    result = ScenarioResult(name=name, capacity=capacity, duration_s=duration_s, rate_hz=rate_hz, faults=faults)
    stack = Stack(root / name.replace(" ", "-"), index_dir)  # redis.conf cannot take a path with spaces
    stack.start()
    config = edge_config(model, camera_dir, stack.broker.port, capacity, rate_hz)
    publisher = create_publisher(config)
    loop = EdgeLoop(
        config, create_source(config.source), Featurizer(model, backend="onnxruntime", threads=1), publisher
    )
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,), name="chaos-edge-loop", daemon=True)
    client = redis.Redis(host=stack.redis.host, port=stack.redis.port)
    try:
        started = time.monotonic()
        worker.start()
        play_faults(faults, started, stack, camera_dir, f"chaos {name}", progress)
        time.sleep(max(0.0, started + duration_s - time.monotonic()))
        stop.set()
        worker.join(15)
        settle_and_account(result, loop, publisher, client, stack)
    finally:
        stop.set()
        publisher.stop(flush_timeout=1.0)
        stack.stop()
    judge(result)
    return result


def edge_config(model: Path, camera_dir: Path, broker_port: int, capacity: int, rate_hz: float) -> Any:
    """The device's configuration: a looping folder at ``rate_hz``, every frame sent, a queue of ``capacity``."""
    from edge_component.config import EdgeConfig

    return EdgeConfig.model_validate(
        {
            "device_id": DEVICE_ID,
            "source": {
                "kind": "folder",
                "path": str(camera_dir),
                "loop": True,
                "realtime": True,
                "fps": rate_hz,
                "stall_timeout_s": 1.0,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            "model": {"path": str(model), "backend": "onnxruntime", "threads": 1},
            "live": {"max_rate_hz": 0, "change_threshold": None},
            "publish": {
                "kind": "mqtt",
                "queue_capacity": capacity,
                "timeout_s": 5.0,
                "mqtt": {"port": broker_port, "reconnect_min_s": 0.5, "reconnect_max_s": 1.0},
            },
            "health": {"status_interval_s": 1.0},
        }
    )


def play_faults(
    faults: list[Fault], started: float, stack: Stack, camera_dir: Path, label: str, progress: bool
) -> None:
    """Each fault at its time (seconds after ``started``), with a progress bar."""
    bar = tqdm(total=len(faults), desc=label, unit="fault", disable=not progress, file=sys.stderr)
    for fault in faults:
        wait = started + fault.at_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        inject(fault, stack, camera_dir)
        bar.update(1)
    bar.close()


def settle_and_account(result: ScenarioResult, loop: Any, publisher: Any, client: redis.Redis, stack: Stack) -> None:
    """Let every queued message reach the broker and the bridge work through what it received, then count."""
    publisher.flush(60)
    stats = loop.stats()
    first_seq, last_seq = loop.first_seq + 1, loop.first_seq + stats["published_seq"]
    _wait_settled(client, first_seq, last_seq)
    result.sent = stats["published_seq"]
    result.acknowledged = int(publisher.stats()["sent"])
    result.dropped = int(publisher.stats()["dropped"])
    result.source_reconnects = int(stats["source"]["reconnects"])
    account(result, client, first_seq, last_seq)
    assert stack.bridge is not None
    result.duplicate_deliveries = count_bridge_duplicates(stack.bridge.log_path)
    result.spooled = count_bridge_lines(stack.bridge.log_path, '"msg":"message_spooled"')


def _wait_settled(client: redis.Redis, first_seq: int, last_seq: int, timeout_s: float = 90.0) -> None:
    """Until the count of idempotency markers stops changing for 6 s (the bridge has drained; its spool retries
    at most every 5 s)."""
    prefix = f"visualsearch:seen:{DEVICE_ID}:*"
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            count = sum(1 for _ in client.scan_iter(match=prefix, count=5000))
        except redis.RedisError:
            count = -1
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 6.0 and count >= 0:
            return
        time.sleep(0.25)


def judge(result: ScenarioResult) -> None:
    problems = []
    if result.duplicate_records:
        problems.append(f"{result.duplicate_records} duplicate records")
    if any(f.error for f in result.faults):
        problems.append("a fault could not be recovered")
    if result.dropped == 0 and result.lost:
        problems.append(f"{result.lost} lost within capacity (seqs {result.lost_seqs[:5]}...)")
    if result.dropped and result.lost != result.dropped:
        problems.append(f"lost {result.lost} != counted drops {result.dropped}")
    if result.sent == 0:
        problems.append("nothing was sent")
    result.ok = not problems
    result.verdict = "OK" if result.ok else "; ".join(problems)


def table(title: str, headers: list[str], rows: list[list[Any]], note: str) -> None:
    """A markdown table (the same shape as ``make bench`` prints; bench/ is not part of the installed package)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n## {title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(note)


def print_table(results: list[ScenarioResult], seed: int) -> None:
    rows = [
        [
            r.name,
            r.capacity,
            r.fault_summary(),
            r.sent,
            r.acknowledged,
            r.stored,
            r.dropped,
            r.lost,
            r.spooled,
            r.duplicate_deliveries,
            r.duplicate_records,
            r.verdict,
        ]
        for r in results
    ]
    table(
        f"chaos (seed {seed})",
        [
            "scenario",
            "queue cap",
            "faults",
            "sent",
            "acked",
            "stored",
            "dropped",
            "lost",
            "spooled",
            "dup deliv",
            "dup rec",
            "",
        ],
        rows,
        "sent = seqs produced by the edge loop; stored = distinct seqs with an idempotency marker in Redis; "
        "lost = sent - dropped - stored; spooled = messages the bridge parked in its durable spool while Redis could"
        " not take writes (replayed later); dup deliv = redeliveries refused by the idempotency check.",
    )
    for r in results:
        for f in r.faults:
            extra = f"  ERROR {f.error}" if f.error else ""
            print(
                f"  {r.name}: t={f.at_s:6.2f}s {f.kind:13s} down {f.down_s:5.2f}s recovered {f.recovered_after_s}s{extra}"
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20250601, help="seed of the fault schedule (printed)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds per scenario")
    parser.add_argument("--rate", type=float, default=20.0, help="frames (= messages) per second")
    parser.add_argument("--faults", type=int, default=12, help="faults in the within-capacity scenario")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS), help="fault kinds, comma-separated")
    parser.add_argument(
        "--store-refuses-s", type=float, default=LONG_FAULTS["store-refuses"], help="how long Redis refuses writes"
    )
    parser.add_argument("--store-down-s", type=float, default=LONG_FAULTS["store-down"], help="how long Redis is down")
    parser.add_argument("--quick", action="store_true", help="short run (what `make test` runs)")
    parser.add_argument("--skip-overflow", action="store_true", help="only the within-capacity scenario")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"--kinds: unknown {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    if args.quick:
        args.duration, args.faults = min(args.duration, 16.0), min(args.faults, len(kinds))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(f"chaos: seed {args.seed}, {args.duration:g} s per scenario at {args.rate:g} msg/s", flush=True)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        results = run_scenarios(args, kinds, root)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print_table(results, args.seed)
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "results": [asdict(r) for r in results]}, indent=2))
    return 0 if all(r.ok for r in results) else 1


def run_scenarios(args: argparse.Namespace, kinds: tuple[str, ...], root: Path) -> list[ScenarioResult]:
    """The seeded faults within the queue's capacity, then (unless skipped) one outage that overflows it."""
    model, index_dir, camera_dir = build_fixture(root / "fixture")
    long_s = {"store-refuses": args.store_refuses_s, "store-down": args.store_down_s}
    within = schedule(args.seed, args.duration, kinds, args.faults, long_s)
    results = [
        run_scenario(
            "within capacity",
            root,
            model,
            index_dir,
            camera_dir,
            capacity=100_000,
            duration_s=args.duration,
            faults=within,
            rate_hz=args.rate,
        )
    ]
    if not args.skip_overflow:
        # A broker outage long enough to overflow a small queue: drops are forced and must equal the loss.
        capacity = max(5, int(args.rate))
        outage = Fault(at_s=3.0, kind="mosquitto", down_s=round(3.0 * capacity / args.rate + 1.0, 2))
        results.append(
            run_scenario(
                "over capacity",
                root,
                model,
                index_dir,
                camera_dir,
                capacity=capacity,
                duration_s=max(10.0, outage.at_s + outage.down_s + 5.0),
                faults=[outage],
                rate_hz=args.rate,
            )
        )
    return results


if __name__ == "__main__":
    raise SystemExit(main())
