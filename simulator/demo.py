"""``make demo``: the whole system on this machine, on sample data built from packaged photos.

Steps (each idempotent): export the model if needed → build the sample catalog and camera video → index the
catalog → ``stack up`` → run the simulator on the video while printing each match record as it arrives on
``visualsearch/+/matches``. Ctrl-C stops what the demo started (a stack that was already running is left
alone). ``--once`` plays the video once, prints a summary (frames, share matched, accuracy against the
ground truth, frame-to-match latency) and stops everything; ``--webcam N`` uses a camera instead.
"""

from __future__ import annotations

import argparse
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
from simulator.sample_data import SampleData, ensure_sample_data

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / ".cache" / "models"
DEFAULT_VARIANT = "int8"
DEMO_MIN_SCORE = 0.52
"""Chosen from measured score distributions of the sample video (392 frames) with the default EfficientNet-Lite0
int8 (four region vectors of the centre 0.6 crop, folded with max; no catalog adaptation), top-1 cosine
(``python -m simulator.demo_threshold --no-adapt``, docs/match-quality.md): catalog-object frames (240) top-1
correct 100 %, score p5 0.49 / p50 0.73; other frames (152) p50 0.31 / p90 0.46 / max 0.52. At 0.52, 94 % of
catalog frames keep their correct top match and no other frame matches; 0.50 would let 4 % through, 0.55
keeps 91 %."""
DEVICE_ID = "demo-cam"
DEMO_ADAPT_VIEWS = 60
"""Training views per catalog item for the demo's adaptation (docs/match-quality.md)."""


@dataclass
class MatchWatcher:
    """Subscribes to ``visualsearch/+/matches`` and keeps (and optionally prints) each record."""

    host: str
    port: int
    echo: bool = True
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
            print(describe_record(record), flush=True)

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
    return f"{record.get('device_id')} #{record.get('seq')}: {what}  [{latency:.0f} ms frame-to-match]"


def ensure_index(sample: SampleData, model: Path, out: Path) -> Path:
    """Index the sample catalog with ``model`` unless an index of the same model and size is there."""
    from cloud_lambda.catalog.indexer import IndexOptions, run_index
    from model.sidecar import read_sidecar

    model_id = read_sidecar(model).model_id
    count = sum(1 for line in sample.items_file.read_text().splitlines() if line.strip())
    manifest = out / "manifest.json"
    if manifest.exists():
        current = json.loads(manifest.read_text())
        if current.get("model_id") == model_id and current.get("count") == count:
            return out
    # One work dir per model: after the default model changes, the demo re-indexes instead of refusing the
    # old journal, and an interrupted run of the same model still resumes. Other models' leftovers go.
    work_dir = out.with_name(f"{out.name}.{model_id}.work")
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


def ensure_adapted(sample: SampleData, model: Path, index_dir: Path) -> dict[str, Any] | None:
    """Adapt the demo index to its catalog (``catalog adapt``) unless its head fits this model and these images.

    The training vectors are cached per model in a work dir beside the index, so re-indexing (or a second
    demo) reuses them; only a new model or changed catalog images featurize the training views again.
    """
    from cloud_lambda.catalog.adapt import adapt_index, catalog_images
    from cloud_lambda.catalog.layout import read_manifest
    from model.adapt.pipeline import AdaptSettings, data_hash
    from model.sidecar import read_sidecar

    model_id = read_sidecar(model).model_id
    section = read_manifest(index_dir).adaptation or {}
    found = catalog_images(index_dir, str(sample.images_dir), sample.items_file)
    settings = AdaptSettings(views_per_item=DEMO_ADAPT_VIEWS)
    if (
        section.get("model_id") == model_id
        and section.get("data_hash") == data_hash(found.ids, found.images)
        and section.get("settings") == settings.as_dict()
    ):
        return None
    work_dir = index_dir.with_name(f"{index_dir.name}.{model_id}.adapt-work")
    for stale in index_dir.parent.glob(f"{index_dir.name}.*.adapt-work"):
        if stale != work_dir and stale.is_dir():
            shutil.rmtree(stale)
    return adapt_index(
        index_dir, str(sample.images_dir), model, metadata=sample.items_file, settings=settings, work_dir=work_dir
    )


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
    summary: dict[str, Any] = {
        "records": len(records),
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
    watcher = MatchWatcher(state.host, mqtt_port, echo=True).start()
    stop = threading.Event()
    try:
        run = run_live(edge, stop, show_stats=False)
        if args.once:
            text = json.dumps(once_summary(run, watcher, sample), indent=2)
            print("summary:\n" + text)
            if args.summary_json:
                args.summary_json.write_text(text)
    except KeyboardInterrupt:
        stop.set()
    finally:
        watcher.stop()
        if started_stack:
            print("stopping the stack:", stack_down(config.state_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
