"""``visual-search edge run|check-config``: the component's entry point (the recipe's Run calls it).

Thin on purpose: build the configuration, the featurizer, the source and the publisher, run the loop
until SIGTERM (what the nucleus sends on stop) or the end of a finite source.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from edge_component.config import ConfigError, EdgeConfig, build_config, live_from_mapping, load_yaml, parse_overrides
from edge_component.publishers.base import publisher_kinds
from model.logs import log_event, setup_logging

log = logging.getLogger(__name__)

GREENGRASS_ENV = ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="edge_command", metavar="SUBCOMMAND")
    sub.required = True
    run = sub.add_parser("run", help="run the camera loop", description="Run the camera → vector → MQTT loop.")
    check = sub.add_parser("check-config", help="validate the configuration and print it as JSON")
    for p in (run, check):
        _add_config_options(p)
    run.set_defaults(handler=run_command)
    check.set_defaults(handler=check_command)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file with any EdgeConfig keys (see docs/edge.md)")
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override one key, e.g. live.max_rate_hz=5"
    )
    gg = p.add_mutually_exclusive_group()
    gg.add_argument(
        "--greengrass",
        dest="greengrass",
        action="store_true",
        default=None,
        help="read the component configuration over IPC and follow its updates (default: when run by a nucleus)",
    )
    gg.add_argument("--no-greengrass", dest="greengrass", action="store_false")
    p.add_argument("--device-id", help="thing name (topics, MQTT client id)")
    p.add_argument("--model", help="ONNX featurizer file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="INDEX", help="USB/V4L2 camera index")
    src.add_argument("--stream", metavar="URL", help="RTSP/HTTP stream URL")
    src.add_argument("--video", metavar="FILE", help="video file")
    src.add_argument("--folder", metavar="DIR", help="folder of images")
    p.add_argument("--publish", choices=publisher_kinds(), help="a registered publisher (publish.kind)")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.device_id:
        out["device_id"] = args.device_id
    if args.model:
        out["model"] = {"path": args.model}
    if args.camera is not None:
        out["source"] = {"kind": "camera", "camera_index": args.camera}
    elif args.stream:
        out["source"] = {"kind": "stream", "url": args.stream}
    elif args.video:
        out["source"] = {"kind": "video", "path": args.video}
    elif args.folder:
        out["source"] = {"kind": "folder", "path": args.folder}
    publish: dict[str, Any] = {}
    if args.publish:
        publish["kind"] = args.publish
    mqtt = {k: v for k, v in (("host", args.mqtt_host), ("port", args.mqtt_port)) if v is not None}
    if mqtt:
        publish["mqtt"] = mqtt
    if publish:
        out["publish"] = publish
    if args.log_level:
        out["log_level"] = args.log_level
    return out


def _use_greengrass(args: argparse.Namespace) -> bool:
    if args.greengrass is not None:
        return bool(args.greengrass)
    return all(os.environ.get(name) for name in GREENGRASS_ENV)


def load_config(args: argparse.Namespace, gg_document: dict[str, Any] | None) -> EdgeConfig:
    file_layer = load_yaml(args.config) if args.config else None
    cfg = build_config(gg_document, file_layer, _flag_overrides(args), parse_overrides(args.set))
    thing = os.environ.get("AWS_IOT_THING_NAME")
    if gg_document is not None and thing and cfg.device_id != thing:
        # The core's IPC policy and the thing's IoT policy allow only the thing's own topics: another id would be
        # refused locally or, worse, make AWS IoT Core drop the core's whole MQTT connection.
        raise ConfigError(
            f"config key 'device_id': {cfg.device_id!r} differs from this core's thing name {thing!r} "
            "(AWS_IOT_THING_NAME); under Greengrass the topics are the thing's own: remove device_id"
        )
    return cfg


def check_command(args: argparse.Namespace) -> int:
    try:
        gg_document = _read_greengrass()[1] if _use_greengrass(args) else None
        cfg = load_config(args, gg_document)
    except (ConfigError, RuntimeError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.model_dump(), indent=2))
    return 0


def _read_greengrass() -> tuple[Any, dict[str, Any]]:
    from edge_component.greengrass_config import GreengrassConfig

    gg = GreengrassConfig()
    return gg, gg.read()


def run_command(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO")
    gg = None
    try:
        gg_document = None
        if _use_greengrass(args):
            gg, gg_document = _read_greengrass()
        cfg = load_config(args, gg_document)
    except (ConfigError, RuntimeError) as exc:
        log_event(log, "config_error", logging.ERROR, error=str(exc))
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    from edge_component.packaging.device_install import installed_runtime

    log_event(log, "starting", device_id=cfg.device_id, installed_runtime=installed_runtime())

    # Heavy imports after the configuration is known to be good: a typo fails in milliseconds.
    from edge_component.loop import EdgeLoop
    from edge_component.publishers import PublishError, create_publisher
    from edge_component.sources import SourceError, create_source
    from model.featurizer import Featurizer

    try:
        featurizer = Featurizer(cfg.model.path, **cfg.model.featurizer_options())
        source = create_source(cfg.source)
        publisher = create_publisher(cfg)
    except (OSError, ValueError, RuntimeError, SourceError, PublishError) as exc:
        log_event(log, "cannot_start", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2

    loop = EdgeLoop(cfg, source, featurizer, publisher)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log_event(log, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if gg is not None:
        gg.watch(lambda document: loop.update_settings(live_from_mapping(document, loop.settings)))
    try:
        loop.run(stop)
    finally:
        if gg is not None:
            gg.close()
        # The nucleus kills Run 5 s after its SIGTERM (util/platforms/unix/UnixExec.close, gracefulShutdownTimeout):
        # finish the flush before that under Greengrass.
        publisher.stop(flush_timeout=3 if gg is not None else 5)
    return 0
