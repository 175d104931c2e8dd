"""``make demo``: the whole system on this machine, on sample data built from packaged photos.

Steps (each idempotent): export the model if needed → build the sample catalog and camera video → index the
catalog → ``stack up`` → run the simulator on the video while printing each match record as it arrives on
``visualsearch/+/matches``. Ctrl-C stops what the demo started (a stack that was already running is left
alone). ``--once`` plays the video once, prints a summary (frames, share matched, accuracy against the
ground truth, frame-to-match latency, which index answered) and stops everything; ``--webcam N`` uses a camera.

Catalog adaptation (``catalog adapt``, :mod:`simulator.demo_adapt`): matches start at once from the index as
indexed; unless the index already has a current head, the demo adapts it in the background (a few minutes of
CPU at low priority, its progress on a status line) and the running search switches to the adapted index when
it is written, with no restart. Later demos start adapted. ``--once`` does not wait for it: it uses a current
head when there is one, else plays unadapted and says so (``--adapt first`` adapts before playing).
``--no-adapt`` plays the index without its head (removed; the cached training data keeps re-adapting cheap).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from model.contracts.topics import topic_filter
from simulator.console import Console
from simulator.demo_adapt import BackgroundAdaptation, DemoAdaptation, done_line, ensure_adapted
from simulator.sample_data import SampleData, ensure_sample_data

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / ".cache" / "models"
DEFAULT_VARIANT = "int8"
DEMO_MIN_SCORE = 0.56
"""Chosen from measured score distributions of the sample video (392 frames) with the default EfficientNet-Lite0
int8 (four region vectors of the centre 0.6 crop, folded with max; no catalog adaptation; each catalog row the
mean of the whole image and its centre crop), top-1 cosine (``python -m simulator.demo_threshold --no-adapt``,
docs/match-quality.md; efficientnet-lite0-int8-cff5091f): catalog-object frames (240) top-1 correct 100 %, score
min 0.48 / p5 0.59 / p50 0.81; other frames (152) p50 0.33 / p90 0.47 / max 0.55. At 0.56, 98 % of catalog frames
keep their correct top match and no other frame matches; 0.52 would let 2 % through, 0.60 keeps 94 %."""
DEMO_MIN_SCORE_ADAPTED = 0.68
"""The threshold once the demo index is adapted (its projection head changes the scale of the scores), chosen
the same way on the same 392 frames with the default int8 (efficientnet-lite0-int8-cff5091f) and the demo's
head (28 items, 60 views each; ``python -m simulator.demo_threshold``): catalog-object frames (240) top-1
correct 100 %, score min 0.73 / p5 0.81 / p50 0.92; other frames (152) p50 0.33 / p90 0.57 / max 0.63. 0.68
sits in the middle of the gap: every catalog frame keeps its correct top match and no other frame matches;
0.56 would let 15 % of the other frames through. Not held out: both thresholds are tuned on the demo's own
video, for the demo (docs/match-quality.md, "Threshold")."""
INDEX_RELOAD_S = 1.0
"""How often the demo's search checks the index for a newer version (the adapted one): cheap (one stat)."""
DEVICE_ID = "demo-cam"
ADAPT_MINUTES = "2-3 minutes on 2 cores"
"""The demo catalog's adaptation: 151 s from nothing on this project's busy 2-core machine (docs/quickstart.md)."""


@dataclass
class MatchWatcher:
    """Subscribes to ``visualsearch/+/matches`` and keeps (and optionally prints) each record."""

    host: str
    port: int
    echo: bool = True
    console: Console = field(default_factory=Console)
    records: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-watch-{time.time_ns()}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter("matches"), qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message

    def start(self) -> MatchWatcher:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError(f"could not subscribe to matches on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            record = json.loads(message.payload)
        except ValueError:
            return
        with self._lock:
            self.records.append(record)
        if self.echo:
            self.console.line(describe_record(record))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)


def describe_record(record: dict[str, Any]) -> str:
    latency = (record.get("searched_at", 0) - record.get("ts", 0)) * 1000
    matches = record.get("matches") or []
    if matches:
        top = matches[0]
        what = f"{top.get('title') or top.get('id')!s} ({top.get('score', 0):.2f})"
    else:
        what = "no match above the threshold"
    index = ", adapted" if record.get("head") else ""
    return f"{record.get('device_id')} #{record.get('seq')}: {what}  [{latency:.0f} ms frame-to-match{index}]"


def ensure_index(sample: SampleData, model: Path, out: Path) -> Path:
    """Index the sample catalog with ``model`` unless an index of the same model, size and catalog views is there."""
    from cloud_lambda.catalog.indexer import IndexOptions, run_index
    from model.retrieval.settings import catalog_views_of, default_catalog_views
    from model.sidecar import read_sidecar

    sidecar = read_sidecar(model)
    model_id, views = sidecar.model_id, default_catalog_views(sidecar)
    count = sum(1 for line in sample.items_file.read_text().splitlines() if line.strip())
    manifest = out / "manifest.json"
    if manifest.exists():
        current = json.loads(manifest.read_text())
        if (
            current.get("model_id") == model_id
            and current.get("count") == count
            and catalog_views_of(current.get("retrieval")) == views
        ):
            return out
    # One work dir per model and catalog views: after the default changes, the demo re-indexes instead of
    # refusing the old journal, and an interrupted run of the same one still resumes. Other leftovers go.
    tag = hashlib.sha1(views.model_dump_json().encode()).hexdigest()[:8]
    work_dir = out.with_name(f"{out.name}.{model_id}-{tag}.work")
    for stale in [out.with_name(out.name + ".work"), *out.parent.glob(f"{out.name}.*.work")]:
        if stale != work_dir and stale.is_dir():
            shutil.rmtree(stale)
    run_index(
        IndexOptions(
            source=str(sample.images_dir),
            out=out,
            model=model,
            metadata=sample.items_file,
            workers=1,
            progress=True,
            work_dir=work_dir,
        )
    )
    return out


DEMO_PORTS = {"mqtt_port": "MQTT", "redis_port": "Redis", "http_port": "web app"}


def choose_ports(
    host: str, asked: dict[str, int], own: set[int] | frozenset[int] = frozenset(), out: TextIO = sys.stderr
) -> dict[str, int]:
    """The asked ports, or 0 (any free one) for each that another program holds — said loudly, never silently.

    README and the printed ``watch:`` line name 8080 and 1883; a demo that quietly moved elsewhere would make
    them fail with no hint why. Probed the way the servers bind (``port_in_use``), so a port left in
    TIME_WAIT by the previous run is free. Ports in ``own`` belong to the demo's running stack: not taken.
    """
    from simulator.stack.processes import port_holder, port_in_use

    chosen = dict(asked)
    for key, port in asked.items():
        if port and port not in own and port_in_use(host, port) is not None:
            holder = port_holder(port)
            print(
                f"   !! port {port} ({DEMO_PORTS.get(key, key)}) is taken{f' by {holder}' if holder else ''}:"
                " this run uses a free port instead, so README's addresses do not apply;"
                " use the ones printed below (or free the port and run again)",
                file=out,
                flush=True,
            )
            chosen[key] = 0
    return chosen


def activate_hint() -> str:
    """How this shell gets ``visual-search`` on PATH: the venv the demo runs from, relative when it can be."""
    venv = Path(sys.prefix)
    return f"source {venv.relative_to(Path.cwd()) if venv.is_relative_to(Path.cwd()) else venv}/bin/activate"


def summarize(records: list[dict[str, Any]], truth: dict[str, Any], first_seq: int, superseded: int) -> dict[str, Any]:
    """Frames, share matched, accuracy against the ground truth (when every frame was sent), latency."""
    latencies = np.array([(r["searched_at"] - r["ts"]) * 1000 for r in records]) if records else np.zeros(0)
    matched = [r for r in records if r.get("matches")]
    adapted = sum(1 for r in records if r.get("head"))
    summary: dict[str, Any] = {
        "records": len(records),
        "index": {"adapted": adapted, "unadapted": len(records) - adapted},
        "share_matched": round(len(matched) / len(records), 3) if records else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
            "p95": round(float(np.percentile(latencies, 95)), 1) if len(latencies) else None,
        },
    }
    frames = truth.get("frames", [])
    if superseded == 0 and frames:
        on_catalog = correct = off_catalog = false_match = 0
        for record in records:
            index = record["seq"] - first_seq
            if not 0 <= index < len(frames):
                continue
            expected = frames[index]["item"]
            top = record["matches"][0]["id"] if record.get("matches") else None
            if expected is None:
                off_catalog += 1
                false_match += top is not None
            else:
                on_catalog += 1
                correct += top == expected
        summary["catalog_frames"] = on_catalog
        summary["catalog_top1"] = round(correct / on_catalog, 3) if on_catalog else None
        summary["other_frames"] = off_catalog
        summary["other_matched"] = round(false_match / off_catalog, 3) if off_catalog else None
    return summary


def start_stack(args: argparse.Namespace, sample: SampleData, model: Path, index_dir: Path) -> tuple[Any, bool, Any]:
    """``stack up`` for the demo: its own running stack is reused, or restarted when its settings differ."""
    from simulator.stack.config import StackConfig
    from simulator.stack.manager import SettingsDiffer, find_running, stack_up

    host = "127.0.0.1"
    state_dir = args.state / "stack"
    ports = {"mqtt_port": args.mqtt_port, "redis_port": args.redis_port, "http_port": args.http_port}
    running = find_running(state_dir.resolve())
    ports = choose_ports(host, ports, own={s.port for s in running.services} if running else frozenset())
    config = StackConfig(
        state_dir=state_dir,
        host=host,
        mqtt_port=ports["mqtt_port"],
        redis_port=ports["redis_port"],
        http_port=ports["http_port"],
        index_dir=index_dir,
        catalog_dir=sample.catalog_dir,
        photo_model=model,
        min_score=DEMO_MIN_SCORE,
        min_score_adapted=DEMO_MIN_SCORE_ADAPTED,
        index_reload_s=INDEX_RELOAD_S,
    )
    try:
        state, started = stack_up(config)
    except SettingsDiffer as exc:
        print(f"   the running stack has other settings ({'; '.join(exc.differences)}): restarting it", flush=True)
        state, started = stack_up(config, restart=True)
    return state, started, config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="play the video once, print a summary, stop everything")
    parser.add_argument("--webcam", type=int, metavar="INDEX", help="use /dev/videoINDEX instead of the sample video")
    parser.add_argument(
        "--state", type=Path, default=REPO_ROOT / ".state", help="state folder (sample data, index, stack)"
    )
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=["fp32", "int8", "fp16"], help="model variant")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument(
        "--fast", action="store_true", help="read the video as fast as the loop goes (no 10 fps pacing)"
    )
    parser.add_argument("--summary-json", type=Path, help="--once: write the summary here too")
    parser.add_argument(
        "--adapt",
        choices=["background", "first", "no"],
        help="catalog adaptation: in the background while matches run (default), first (before playing;"
        " --once's choice when it has no head yet is to play unadapted), or no (play without the head)",
    )
    parser.add_argument("--no-adapt", dest="adapt", action="store_const", const="no", help="the same as --adapt no")
    return parser


def prepare(args: argparse.Namespace) -> tuple[Path, SampleData, Path]:
    """Steps 1-3: the exported model, the sample data and the catalog index (each reused when current)."""
    print("1/5 model: EfficientNet-Lite0", args.variant, flush=True)
    from model.export.api import ensure_exported

    model = ensure_exported(MODEL_DIR, (args.variant,), progress=True)[args.variant]
    print("2/5 sample catalog and camera video", flush=True)
    sample = ensure_sample_data(args.state / "sample")
    truth = sample.truth()
    print(f"   {sample.root}: {truth.get('size', 'full')} sample, {len(truth['frames'])} video frames", flush=True)
    print("3/5 catalog index", flush=True)
    return model, sample, ensure_index(sample, model, args.state / "demo-index")


def prepare_adaptation(args: argparse.Namespace, plan: DemoAdaptation) -> bool:
    """Step 3's second half: what this run does about adaptation; → True to adapt in the background."""
    from cloud_lambda.catalog.layout import apply_head, read_manifest

    if args.adapt == "no":
        if read_manifest(plan.index_dir).adaptation:
            apply_head(plan.index_dir, None, None)
            print("   --no-adapt: the index's head is removed; the next `make demo` adapts again from its cache")
        print(f"   not adapted (--no-adapt): matches from the index as indexed, threshold {DEMO_MIN_SCORE}")
        return False
    state = plan.state()
    if state == "current":
        section = read_manifest(plan.index_dir).adaptation or {}
        print(
            f"   adapted: head {str(section.get('head_sha256'))[:12]}, trained on {section.get('items')} items"
            f" at {section.get('trained_at')} (threshold {DEMO_MIN_SCORE_ADAPTED})",
            flush=True,
        )
        return False
    if args.adapt == "first":
        print(f"   adapting first ({ADAPT_MINUTES}): {plan.shown()}", flush=True)
        ensure_adapted(plan)
        print(done_line(read_manifest(plan.index_dir).adaptation or {}), flush=True)
        return False
    if args.adapt is None and args.once:
        print(
            f"   not adapted yet: this run plays the index as indexed (threshold {DEMO_MIN_SCORE}). `make demo` adapts"
            f" it in the background ({ADAPT_MINUTES}) and later runs start adapted;"
            " `make demo ONCE=1 ADAPT=first` adapts before playing",
            flush=True,
        )
        return False
    what = "the head is out of date: re-adapting" if state == "stale" else "adapting the catalog"
    print(f"   {what} in the background once the stack is up ({ADAPT_MINUTES}): {plan.shown()}", flush=True)
    return True


def print_how_to_watch(state: Any, started_stack: bool) -> int:
    """The web app, a watch command and how to stop; returns the broker's port."""
    host = state.host
    mqtt_port = next(s.port for s in state.services if s.name == "mosquitto")
    print(f"   web app:   {state.urls['web']}")
    print(f"   watch:     mosquitto_sub -h {host} -p {mqtt_port} -t '{topic_filter('matches')}' -v")
    print(f"   stop:      Ctrl-C{'' if started_stack else ' (the stack was already running: it stays up)'}")
    print(f"   by hand:   {activate_hint()}, then `visual-search --help` (README: The pieces by hand)")
    return int(mqtt_port)


def edge_config(args: argparse.Namespace, sample: SampleData, model: Path, host: str, mqtt_port: int) -> Any:
    """The simulated camera: the sample video (or a webcam) through the device loop to the local broker."""
    from simulator.live import build_live_config

    source: dict[str, Any]
    if args.webcam is not None:
        source = {"kind": "camera", "camera_index": args.webcam}
    else:
        source = {"kind": "video", "path": str(sample.video), "loop": not args.once, "realtime": not args.fast}
    return build_live_config(
        {
            "device_id": DEVICE_ID,
            "source": source,
            "model": {"path": str(model)},
            "live": {"max_rate_hz": 0, "change_threshold": None} if args.once else {"max_rate_hz": 5},
            "publish": {"kind": "mqtt", "mqtt": {"host": host, "port": mqtt_port}},
            "health": {"status_interval_s": 2},
            "thumbnail": {"enabled": True},  # off by default on a device; the demo's web app shows them
        }
    )


def once_summary(run: Any, watcher: MatchWatcher, sample: SampleData) -> dict[str, Any]:
    """After one play of the video: wait for the last searches to land (up to 15 s), then count."""
    expected = run.summary()["published"]
    deadline = time.monotonic() + 15
    while len([r for r in watcher.snapshot() if r.get("device_id") == DEVICE_ID]) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    records = [r for r in watcher.snapshot() if r.get("device_id") == DEVICE_ID]
    stats = run.loop.stats()
    return {
        "frames": stats["captured"],
        "published": stats["publisher"]["sent"],
        "backend": run.summary()["backend"],
        **summarize(records, sample.truth(), run.loop.first_seq + 1, stats["superseded"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from model.logs import setup_logging as setup_json_logging

    # Service-style JSON logs go to a file; the terminal shows the demo's own lines.
    args.state.mkdir(parents=True, exist_ok=True)
    setup_json_logging(logging.INFO, open(args.state / "demo.log", "a"))  # noqa: SIM115 - lives as long as the process

    if args.webcam is not None:
        from simulator.live import SourceUnavailable, check_camera

        try:
            check_camera(args.webcam)
        except SourceUnavailable as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
    model, sample, index_dir = prepare(args)
    plan = DemoAdaptation(index_dir, sample.images_dir, sample.items_file, model)
    in_background = prepare_adaptation(args, plan)

    print("4/5 local stack", flush=True)
    from simulator.stack.manager import StackError, stack_down

    try:
        state, started_stack, config = start_stack(args, sample, model, index_dir)
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    mqtt_port = print_how_to_watch(state, started_stack)

    print("5/5 simulator on", f"/dev/video{args.webcam}" if args.webcam is not None else sample.video, flush=True)
    from simulator.live import run_live

    edge = edge_config(args, sample, model, state.host, mqtt_port)
    console = Console()
    watcher = MatchWatcher(state.host, mqtt_port, echo=True, console=console).start()
    adaptation = BackgroundAdaptation(plan, console, args.state / "demo-adapt.log").start() if in_background else None
    stop = threading.Event()
    try:
        run = run_live(edge, stop, show_stats=False)
        if args.once:
            text = json.dumps(once_summary(run, watcher, sample), indent=2)
            console.line("summary:\n" + text)  # below the status line, if one is shown
            if args.summary_json:
                args.summary_json.write_text(text)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if adaptation is not None:
            adaptation.stop()
        watcher.stop()
        if started_stack:
            print("stopping the stack:", stack_down(config.state_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
