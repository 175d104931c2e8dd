"""The device loop on a laptop: the edge component's own ``EdgeLoop`` fed by a webcam, video file or folder.

Nothing of the loop is copied here: this module only turns simulator options into an ``EdgeConfig`` layer
and prints a live stats line while the loop runs.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from edge_component.config import ConfigError, EdgeConfig, build_config
from edge_component.loop import EdgeLoop
from edge_component.publishers import create_publisher
from edge_component.sources import create_source
from model.contracts.errors import VisualSearchError
from model.featurizer import Featurizer


class SourceUnavailable(VisualSearchError, RuntimeError):
    """The chosen input cannot be opened now; the message names it and says what to do."""


CAMERA_FIX = (
    "fix: connect one (`ls /dev/video*` lists cameras), pick another index (`--webcam 1`, `make demo WEBCAM=1`), "
    "or run without a camera: `make demo` plays the sample video"
)


def check_camera(index: int) -> None:
    """Open ``/dev/video<index>`` once and read a frame, or raise :class:`SourceUnavailable` with the fix.

    On a device the watchdog retries a missing camera forever, which is right for a camera that comes back;
    on a laptop a camera that is not there at start is a mistake to report once, not an outage to wait out.
    OpenCV's own warnings about the failed open are silenced: the one line the user needs is ours.
    """
    import cv2

    from edge_component.sources.base import SourceError
    from edge_component.sources.camera import CameraReader

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    reader = CameraReader(index)
    try:
        reader.open()
        reader.read()
    except SourceError as exc:
        raise SourceUnavailable(f"{exc}; {CAMERA_FIX}") from None
    finally:
        reader.close()
        cv2.utils.logging.setLogLevel(level)


def broker_layer(
    broker: str | None, iot_endpoint: str | None, cert: str | None, key: str | None, ca: str | None
) -> dict[str, Any]:
    """``mqtt://host:port`` (local mosquitto) or an AWS IoT Core endpoint with the device's certificate files."""
    if iot_endpoint:
        if not (cert and key and ca):
            raise ConfigError(
                "AWS IoT Core needs --cert, --key and --ca (the device certificate, its key, the Amazon root CA)"
            )
        return {
            "publish": {
                "kind": "mqtt",
                "mqtt": {"host": iot_endpoint, "port": 8883, "cert_file": cert, "key_file": key, "ca_file": ca},
            }
        }
    if not broker:
        return {}
    parts = urlsplit(broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"--broker {broker!r}: expected mqtt://host:port")
    mqtt: dict[str, Any] = {"host": parts.hostname, "port": parts.port or (8883 if parts.scheme == "mqtts" else 1883)}
    if ca:
        mqtt["ca_file"] = ca
    if cert or key:
        mqtt.update(cert_file=cert, key_file=key)
    return {"publish": {"kind": "mqtt", "mqtt": mqtt}}


def source_layer(
    video: str | None, folder: str | None, webcam: int | None, stream: str | None, loop: bool, fast: bool
) -> dict[str, Any]:
    chosen = [
        name
        for name, value in (("--video", video), ("--folder", folder), ("--webcam", webcam), ("--stream", stream))
        if value is not None
    ]
    if len(chosen) > 1:
        raise ConfigError(f"choose one source, got {' and '.join(chosen)}")
    if video is not None:
        return {"source": {"kind": "video", "path": video, "loop": loop, "realtime": not fast}}
    if folder is not None:
        return {"source": {"kind": "folder", "path": folder, "loop": loop, "realtime": not fast}}
    if webcam is not None:
        return {"source": {"kind": "camera", "camera_index": webcam}}
    if stream is not None:
        return {"source": {"kind": "stream", "url": stream}}
    return {}


def live_layer(rate: float | None, every_frame: bool) -> dict[str, Any]:
    if every_frame:
        # Every frame featurized and sent: what the end-to-end test and the latency bench need.
        return {"live": {"max_rate_hz": 0, "change_threshold": None}}
    return {"live": {"max_rate_hz": rate}} if rate is not None else {}


@dataclass
class LiveRun:
    config: EdgeConfig
    loop: EdgeLoop
    elapsed_s: float

    def summary(self) -> dict[str, Any]:
        stats = self.loop.stats()
        return {
            "device_id": self.config.device_id,
            "model_id": self.loop.featurizer.model_id,
            "backend": self.loop.featurizer.backend_info.describe(),
            "captured": stats["captured"],
            "processed": stats["processed"],
            "published": stats["publisher"]["sent"],
            "dropped": stats["publisher"]["dropped"],
            "skipped": stats["skipped_rate"] + stats["skipped_unchanged"] + stats["superseded"],
            "errors": stats["errors"],
            "first_seq": self.loop.first_seq + 1,
            "last_seq": self.loop.first_seq + stats["published_seq"],
            "featurize_ms": stats["featurize_ms"],
            "elapsed_s": round(self.elapsed_s, 2),
        }


def stats_line(loop: EdgeLoop) -> str:
    status = loop.status()
    frames = status["frames"]
    fz = status["featurize_ms"] or {}
    p50 = f"{fz['p50']:.1f}" if isinstance(fz.get("p50"), int | float) else "-"
    return (
        f"{status['device_id']} {status['state']:8} {status['fps']:5.1f} fps  captured {frames['captured']:6d}"
        f"  published {frames['published']:6d}  skipped {frames['skipped']:5d}  dropped {frames['dropped']:4d}"
        f"  queue {status['queue_depth']:3d}  featurize p50 {p50} ms  [{status['backend']} {status['device']}]"
    )


def run_live(
    config: EdgeConfig,
    stop: threading.Event | None = None,
    stats_out: TextIO | None = None,
    stats_every_s: float = 1.0,
    show_stats: bool = True,
    on_loop: Callable[[EdgeLoop], None] | None = None,
) -> LiveRun:
    """Build source, featurizer and publisher from ``config``, run the edge loop until stop or end of input."""
    stop = stop or threading.Event()
    # Resolved per call, not at import: sys.stderr may be replaced (pytest capture, redirection).
    if stats_out is None and show_stats:
        stats_out = sys.stderr
    featurizer = Featurizer(config.model.path, **config.model.featurizer_options())
    loop = EdgeLoop(config, create_source(config.source), featurizer, create_publisher(config))
    if on_loop is not None:
        on_loop(loop)
    worker = threading.Thread(target=loop.run, args=(stop,), name="edge-loop", daemon=True)
    started = time.perf_counter()
    worker.start()
    tty = stats_out is not None and stats_out.isatty()
    try:
        while worker.is_alive():
            worker.join(stats_every_s)
            if stats_out is not None and worker.is_alive():
                # One line rewritten in place on a terminal; plain lines in a log.
                stats_out.write(("\r" if tty else "") + stats_line(loop) + ("" if tty else "\n"))
                stats_out.flush()
    except KeyboardInterrupt:
        stop.set()
        worker.join(10)
    finally:
        stop.set()
        worker.join(10)
        loop.publisher.stop(flush_timeout=5.0)
        if stats_out is not None:
            stats_out.write(("\r" if tty else "") + stats_line(loop) + "\n")
    return LiveRun(config, loop, time.perf_counter() - started)


def build_live_config(*layers: dict[str, Any] | None) -> EdgeConfig:
    return build_config(*layers)
