"""``visual-search simulate``: the device loop on a laptop, or ``--replay`` load from many simulated devices.

Examples::

    visual-search simulate --video .state/sample/camera.avi --model .cache/models/efficientnet-lite0-int8.onnx
    visual-search simulate --webcam 0 --device-id my-laptop
    visual-search simulate --folder photos/ --iot-endpoint xxxx-ats.iot.eu-west-1.amazonaws.com \\
        --cert device.pem.crt --key private.pem.key --ca AmazonRootCA1.pem --device-id my-thing
    visual-search simulate --replay --devices 20 --rate 500 --count 5000 --index-dir .state/demo-index
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def register(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("Examples::", 1)[1] if __doc__ else None
    src = parser.add_argument_group("source (live mode)")
    src.add_argument("--video", help="a video file")
    src.add_argument("--folder", help="a folder of images")
    src.add_argument("--webcam", type=int, metavar="INDEX", help="a camera (/dev/videoINDEX)")
    src.add_argument("--stream", metavar="URL", help="an RTSP/HTTP stream")
    src.add_argument("--loop", action="store_true", help="restart the video/folder at its end")
    src.add_argument("--fast", action="store_true", help="read the file as fast as the loop takes frames (no pacing)")
    src.add_argument("--rate", type=float, help="most messages per second (device default 2)")
    src.add_argument("--every-frame", action="store_true", help="featurize and send every frame (no rate/change gate)")
    src.add_argument("--model", help="ONNX featurizer (default: the edge component's model.path)")
    src.add_argument("--backend", choices=["auto", "onnxruntime", "openvino"])
    src.add_argument("--config", type=Path, help="an edge component YAML config to start from")
    src.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any edge config key, repeatable")
    dest = parser.add_argument_group("transport")
    dest.add_argument("--device-id", help="thing name (default sim-01; replay: prefix of sim-NNN)")
    dest.add_argument("--broker", default=None, help="mqtt://host:port (default mqtt://127.0.0.1:1883)")
    dest.add_argument("--iot-endpoint", help="AWS IoT Core endpoint (mutual TLS on 8883)")
    dest.add_argument("--cert", help="device certificate file")
    dest.add_argument("--key", help="device private key file")
    dest.add_argument("--ca", help="CA file (Amazon Root CA 1 for IoT Core)")
    rep = parser.add_argument_group("replay/load mode")
    rep.add_argument("--replay", action="store_true", help="publish stored or synthetic vectors instead of frames")
    rep.add_argument("--devices", type=int, default=1, help="simulated devices")
    rep.add_argument("--count", type=int, help="messages in total")
    rep.add_argument("--duration", type=float, help="seconds")
    rep.add_argument("--index-dir", type=Path, help="replay noisy copies of this catalog index's vectors")
    rep.add_argument("--vectors", type=Path, help="a .npy [N, D] of pre-computed vectors")
    rep.add_argument("--synthetic-dim", type=int, help="random unit vectors of this dimension")
    rep.add_argument("--model-id", help="model id for --vectors / --synthetic-dim")
    parser.add_argument("--summary-json", type=Path, help="write the end-of-run summary here")
    parser.set_defaults(handler=run)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def run(args: argparse.Namespace) -> int:
    from edge_component.config import ConfigError
    from model.runtime.base import BackendUnavailable
    from simulator.live import SourceUnavailable

    try:
        summary = _run_replay(args) if args.replay else _run_live(args)
    except (ConfigError, ValidationError, ValueError, FileNotFoundError, SourceUnavailable) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:  # every runtime refused the file: say so in one line, not a traceback
        reason = " ".join(str(exc).split())[:400]
        print(
            f"simulate: model {args.model or 'model.path'} cannot be loaded ({reason}); re-export it", file=sys.stderr
        )
        return 2
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if args.summary_json:
        args.summary_json.write_text(text)
    return 0


def _run_live(args: argparse.Namespace) -> dict[str, Any]:
    from edge_component.config import load_yaml, parse_overrides
    from model.logs import setup_logging as setup_json_logging
    from simulator.live import broker_layer, build_live_config, check_camera, live_layer, run_live, source_layer

    setup_json_logging()
    layers: list[dict[str, Any] | None] = [
        {"device_id": "sim-01", "publish": {"kind": "mqtt"}},
        load_yaml(args.config) if args.config else None,
        source_layer(args.video, args.folder, args.webcam, args.stream, args.loop, args.fast),
        live_layer(args.rate, args.every_frame),
        broker_layer(args.broker, args.iot_endpoint, args.cert, args.key, args.ca),
        {"model": {k: v for k, v in (("path", args.model), ("backend", args.backend)) if v}},
        {"device_id": args.device_id} if args.device_id else None,
        parse_overrides(args.set),
    ]
    config = build_live_config(*layers)
    if config.source.kind == "camera":
        check_camera(config.source.camera_index)
    return run_live(config, _stop_on_signals()).summary()


def _run_replay(args: argparse.Namespace) -> dict[str, Any]:
    from simulator.live import broker_layer
    from simulator.replay import ReplayConfig, run_replay

    mqtt = broker_layer(args.broker, args.iot_endpoint, args.cert, args.key, args.ca).get("publish", {}).get("mqtt", {})
    cfg = ReplayConfig(
        devices=args.devices,
        rate=args.rate or 10.0,
        count=args.count,
        duration_s=args.duration,
        device_prefix=args.device_id or "sim",
        index_dir=args.index_dir,
        vectors_file=args.vectors,
        model_id=args.model_id,
        dim=args.synthetic_dim or 1280,
        mqtt=mqtt,
    )
    tty = sys.stderr.isatty()

    def progress(totals: dict[str, Any]) -> None:
        line = "  ".join(f"{k} {v}" for k, v in totals.items())
        sys.stderr.write(("\r" if tty else "") + line + ("" if tty else "\n"))

    result = run_replay(cfg, _stop_on_signals(), on_progress=progress)
    if tty:
        sys.stderr.write("\n")
    return result.as_dict()
