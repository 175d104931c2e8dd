"""``visual-search stack up|down|status``: the local stand-ins for IoT Core, the IoT rule, Redis and the API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from simulator.stack.config import DEFAULT_STATE_DIR, StackConfig


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stack_command", metavar="ACTION")
    sub.required = True
    up = sub.add_parser(
        "up",
        help="start mosquitto, redis, the rule bridge and the API + web app (or find them)",
        description="Start the local stand-ins for AWS IoT Core (mosquitto), the IoT rule (rule bridge), ElastiCache "
        "(redis-server) and API Gateway (HTTP server + web app), detached, each health-checked. A second `up` finds "
        "the running stack; asked for other settings, it names them (apply with --restart).",
    )
    _add_state_dir(up)
    up.add_argument("--index-dir", type=Path, required=True, help="catalog index from `visual-search catalog index`")
    up.add_argument("--catalog-dir", type=Path, help="catalog images, served under /catalog/ for the web app")
    up.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback)")
    up.add_argument("--mqtt-port", type=int, default=1883, help="default %(default)s; 0: any free port")
    up.add_argument("--redis-port", type=int, default=6379, help="default %(default)s; 0: any free port")
    up.add_argument("--http-port", type=int, default=8080, help="default %(default)s; 0: any free port")
    up.add_argument("--metadata", help="metadata store URL (default: the index folder's metadata.sqlite)")
    up.add_argument(
        "--photo-model", type=Path, help="ONNX model for 'search by photo'; must be the one the index was built with"
    )
    up.add_argument("--min-score", type=float, help="cosine score below which a hit is not a match")
    up.add_argument(
        "--min-score-adapted",
        type=float,
        help="the same for an adapted index (`catalog adapt`: its head changes the scale of the scores)",
    )
    up.add_argument("--top-k", type=int, default=5, help="matches kept per frame (default %(default)s)")
    up.add_argument(
        "--restart", action="store_true", help="stop a running stack first, so new settings apply (default: keep it)"
    )
    up.set_defaults(handler=cmd_up)
    down = sub.add_parser(
        "down",
        help="stop exactly what `up` started",
        description="Stop the processes recorded in stack.json (only pids whose command line still matches).",
    )
    _add_state_dir(down)
    down.set_defaults(handler=cmd_down)
    status = sub.add_parser(
        "status",
        help="print the running stack (JSON); exit 1 when none runs",
        description="Print the services, their ports and URLs as JSON; exit code 1 when no stack (or part of one) "
        "is running.",
    )
    _add_state_dir(status)
    status.set_defaults(handler=cmd_status)


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"stack.json, logs, data (default {DEFAULT_STATE_DIR})",
    )


def config_from_args(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        state_dir=args.state_dir,
        host=args.host,
        mqtt_port=args.mqtt_port,
        redis_port=args.redis_port,
        http_port=args.http_port,
        index_dir=args.index_dir,
        catalog_dir=args.catalog_dir,
        metadata=args.metadata,
        photo_model=args.photo_model,
        min_score=args.min_score,
        min_score_adapted=args.min_score_adapted,
        top_k=args.top_k,
    )


def _config_error(exc: ValidationError) -> int:
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        # Name the flag the user typed, not the settings field behind it.
        where = f"--{key.replace('_', '-')}" if key else "config"
        print(f"stack up: {where}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
    return 2


def cmd_up(args: argparse.Namespace) -> int:
    from simulator.stack.manager import StackError, stack_up

    try:
        config = config_from_args(args)
    except ValidationError as exc:
        return _config_error(exc)
    try:
        state, started = stack_up(config, restart=args.restart)
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    print(("stack started" if started else "stack already running") + f" (state: {config.state_dir})")
    for name, url in state.urls.items():
        print(f"  {name:6} {url}")
    mqtt = state.service("mosquitto")
    if mqtt is not None:
        print(f"  watch: mosquitto_sub -h {state.host} -p {mqtt.port} -t 'visualsearch/+/matches' -v")
    if config.photo_model is None:
        print("  (no --photo-model: 'Search by photo' answers 503 until the stack runs with one)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from simulator.stack.manager import stack_down

    outcome = stack_down(args.state_dir.resolve())
    if not outcome:
        print(f"no stack recorded in {args.state_dir}")
    for name, what in outcome.items():
        print(f"  {name:9} {what}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from simulator.stack.state import describe, read_state

    state = read_state(args.state_dir.resolve())
    if state is None:
        print(json.dumps({"running": False}))
        return 1
    info = describe(state)
    running = all(info["services"].values())
    print(json.dumps({"running": running, **info}, indent=2))
    return 0 if running else 1
