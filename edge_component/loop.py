"""The device loop: newest frame → prepare → featurize → gate → encode → publish, plus the status message.

One inference thread runs the stages in order; capture — and, by default, frame preparation — happens in the
source's grabber thread and network I/O in the publisher's sender thread, so neither a slow camera nor a slow
link stalls inference, the inference thread only featurizes, and it never works through a backlog of old frames.

Frame age at publish = prepare (in the grabber or, failing that, in the loop) + queued (waiting to be taken by
the loop) + featurize + encode + publish (hand-over to the sender thread); the parts are kept per frame in
:attr:`EdgeLoop.age_parts` so the bench can say where the time goes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from edge_component.config import EdgeConfig, LiveSettings, RoiConfig
from edge_component.gate import Gate
from edge_component.packaging.device_install import installed_runtime
from edge_component.publishers.base import Publisher
from edge_component.sources.base import Frame, FrameSource
from edge_component.stats import RateMeter, Timings
from edge_component.thumbnail import ThumbnailSender
from model.contracts.errors import Rejected
from model.contracts.status import State, build_status, encode_status
from model.contracts.topics import features_topic, status_topic
from model.contracts.wire import FeatureMessage, encode
from model.featurizer import Featurizer
from model.logs import log_event
from model.prepare import Roi
from model.retrieval.frame_crop import FrameCrop

AGE_HISTORY = 4096
"""Frame-age samples kept for the bench and tests (the status uses the rolling timings)."""

log = logging.getLogger(__name__)


def _roi(cfg: RoiConfig | None) -> Roi | None:
    return None if cfg is None else Roi(cfg.x, cfg.y, cfg.w, cfg.h)


def _frame_crop(featurizer: Featurizer, cfg: RoiConfig | None) -> FrameCrop:
    # The model's sidecar may ask for a centre crop (held-up objects, docs/match-quality.md), and for the whole
    # frame when that crop is blank; both apply inside the configured ROI so device and index use the settings
    # the model was evaluated with.
    from model.retrieval.settings import effective_crop

    return effective_crop(getattr(featurizer, "sidecar", None), _roi(cfg))


class EdgeLoop:
    """Runs until ``stop`` is set or a finite source ends. Thread-safe: ``stats``, ``update_settings``."""

    def __init__(self, config: EdgeConfig, source: FrameSource, featurizer: Featurizer, publisher: Publisher) -> None:
        self.config = config
        self.source = source
        self.featurizer = featurizer
        self.publisher = publisher
        self.gate = Gate(config.live)
        self.timings = Timings()
        # The most recent frames only: a device runs for months, the bench needs a few hundred.
        self.frame_age_ms: deque[float] = deque(maxlen=AGE_HISTORY)
        """Age of each published frame when it was handed to the publisher (bench reads it)."""
        self.age_parts: deque[dict[str, float]] = deque(maxlen=AGE_HISTORY)
        """Per published frame, the parts its age is made of (ms): queued, prepare, featurize, encode, publish."""
        self._fps = RateMeter()
        self._crop = _frame_crop(featurizer, config.live.roi)
        self._choice = featurizer.backend_choice.as_dict()
        self._installed = installed_runtime()  # what the Greengrass Install step put in the venv
        self._lock = threading.Lock()
        # Seq must not repeat across restarts: the cloud's idempotency marker is keyed by (device, seq)
        # for 24 h. Starting from the epoch in milliseconds keeps it increasing across restarts.
        self._seq = int(time.time() * 1000)
        self.first_seq = self._seq
        self.processed = 0
        self.skipped = {"rate": 0, "unchanged": 0}
        self.errors = 0
        self.last_error: str | None = None
        self._state: State | None = None
        self._last_status_at = 0.0
        self._topic = features_topic(config.device_id)
        self.thumbnails = ThumbnailSender(config.thumbnail, config.device_id, publisher)
        self._status_topic = status_topic(config.device_id)
        self.thread: threading.Thread | None = None
        # For the grabber's "will this frame be taken?" guess (monotonic seconds; plain floats, written by
        # one thread each).
        self._busy_until = 0.0
        self._busy_estimate = 0.0
        self._grab_interval = 0.0
        self._last_grab_at = 0.0

    # --- live settings -----------------------------------------------------------------------------
    @property
    def settings(self) -> LiveSettings:
        return self.gate.settings

    def update_settings(self, settings: LiveSettings | None = None, **changes: Any) -> LiveSettings:
        """Replace the live settings (whole, or the named fields); validated, applied on the next frame."""
        base = settings or self.gate.settings
        new = LiveSettings.model_validate({**base.model_dump(), **changes}) if changes else base
        with self._lock:
            self.gate.update(new)
            self._crop = _frame_crop(self.featurizer, new.roi)
        log_event(log, "live_settings_updated", settings=new.model_dump())
        return new

    # --- main loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.thread = threading.current_thread()
        if self.config.source.prepare == "grabber":
            self.source.prepare = self._prepare_in_grabber
        self.source.start()
        self.publisher.start()
        log_event(
            log,
            "edge_loop_started",
            device_id=self.config.device_id,
            model_id=self.featurizer.model_id,
            backend=self.featurizer.backend_info.describe(),
            backend_choice=self.featurizer.backend_choice.reason,
            source=self.source.reader.describe(),
            publisher=self.publisher.kind,
        )
        try:
            while not stop.is_set():
                frame = self.source.get(timeout=0.25)
                if frame is not None:
                    self._process(frame)
                elif self.source.ended:
                    break
                self._maybe_status()
        finally:
            self.source.stop()
            self._send_status()
            log_event(log, "edge_loop_stopped", **self.stats())

    def _prepare_in_grabber(self, image: np.ndarray) -> np.ndarray | None:
        # Frames handed over raw are prepared by the loop if it takes them at all: skipping work here only
        # saves CPU that inference, on the same cores, needs.
        now = time.monotonic()
        if self._last_grab_at:
            self._grab_interval = 0.8 * self._grab_interval + 0.2 * (now - self._last_grab_at)
        self._last_grab_at = now
        # A frame the rate limit will refuse is not worth preparing (the default camera rate is 15× the
        # default publish rate); the loop still counts it as rate-skipped.
        if now < self.gate.ready_at():
            return None
        # Live source faster than inference: if a newer frame will arrive before the loop is free, this one
        # will be superseded, so preparing it would be wasted.
        if self.source.live and now + self._grab_interval < self._busy_until:
            return None
        with self._lock:
            crop = self._crop
        return crop.prepare(image, self.featurizer.input_size)

    def _featurize(self, prepared: np.ndarray) -> np.ndarray:
        """``[R, D]``: every region vector of a region model (wire version 2), else the one vector."""
        model_regions = getattr(self.featurizer, "regions", None)  # stand-in featurizers in tests have none
        if self.config.publish.wire_version == 2 and model_regions is not None and not model_regions.is_single:
            return self.featurizer.featurize_regions(prepared[None])[0]
        return self.featurizer.featurize(prepared[None])

    def _process(self, frame: Frame) -> None:
        """One frame through the stages: rate gate → prepare + featurize → change gate → encode → publish."""
        taken_at = time.monotonic()
        # Rate limit before inference: a frame that could not be sent is not worth featurizing.
        if taken_at < self.gate.ready_at():
            self.skipped["rate"] += 1
            return
        if frame.prepare_error is not None:
            self._error(f"frame {frame.index}: {frame.prepare_error}")
            return
        inferred = self._infer(frame, taken_at)
        if inferred is None:
            return
        prepared, regions, stages = inferred
        result = self.gate.check(_change_vector(regions), time.monotonic())
        if result.decision != "send":
            self.skipped[result.decision] += 1
            return
        self._seq += 1
        t2 = time.perf_counter()
        try:
            payload = encode(self._message(frame, regions, stages))
        except Rejected as exc:
            self._error(f"frame {frame.index}: not sent: {exc}")
            return
        t3 = time.perf_counter()
        self.publisher.publish(self._topic, payload, seq=self._seq)
        stages.update(encode=(t3 - t2) * 1000, publish=(time.perf_counter() - t3) * 1000)
        # After the timestamp: a thumbnail is not part of the frame's age (≈ 1 ms at most once a second).
        self.thumbnails.offer(prepared, self._seq, frame.wall_ts)
        self._record_age(frame, taken_at, stages)

    def _infer(self, frame: Frame, taken_at: float) -> tuple[np.ndarray, np.ndarray, dict[str, float]] | None:
        """(prepared frame, region vectors ``[R, D]``, stage ms) or None after an error (logged and counted)."""
        self._busy_until = taken_at + self._busy_estimate
        try:
            t0 = time.perf_counter()
            prepared = frame.prepared
            if prepared is None:
                with self._lock:
                    crop = self._crop
                prepared = crop.prepare(frame.image, self.featurizer.input_size)
            t1 = time.perf_counter()
            regions = self._featurize(prepared)
            t2 = time.perf_counter()
        except Exception as exc:  # a bad frame or a runtime hiccup must not end the loop
            self._error(f"frame {frame.index}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self._busy_until = 0.0
        stages = {
            "prepare": frame.prepare_ms if frame.prepared is not None else (t1 - t0) * 1000,
            "featurize": (t2 - t1) * 1000,
        }
        self._busy_estimate = 0.8 * self._busy_estimate + 0.2 * (t2 - t0)
        self.processed += 1
        self._fps.tick(time.monotonic())
        self.timings.add("prepare", stages["prepare"])
        self.timings.add("featurize", stages["featurize"])
        return prepared, regions, stages

    def _message(self, frame: Frame, regions: np.ndarray, stages: dict[str, float]) -> FeatureMessage:
        height, width = frame.image.shape[:2]
        return FeatureMessage(
            device_id=self.config.device_id,
            seq=self._seq,
            ts=frame.wall_ts,
            model_id=self.featurizer.model_id,
            vector=regions[0],
            frame_w=width,
            frame_h=height,
            timing_ms={"prepare": stages["prepare"], "featurize": stages["featurize"]},
            dtype=self.config.publish.dtype,
            regions=regions if len(regions) > 1 else None,
        )

    def _record_age(self, frame: Frame, taken_at: float, stages: dict[str, float]) -> None:
        self.timings.add("encode", stages["encode"])
        age_ms = (time.monotonic() - frame.captured_at) * 1000
        self.timings.add("frame_age", age_ms)
        self.frame_age_ms.append(age_ms)
        # waiting for the loop to take it (the grabber's preparation is counted under prepare)
        queued = (taken_at - frame.captured_at) * 1000 - (frame.prepare_ms if frame.prepared is not None else 0.0)
        self.age_parts.append({"queued": queued, **stages})

    def _error(self, message: str) -> None:
        self.errors += 1
        if message != self.last_error:
            log_event(log, "frame_skipped", logging.WARNING, error=message)
        self.last_error = message

    # --- status ------------------------------------------------------------------------------------
    def state(self) -> State:
        if self.source.state in ("reconnecting", "starting") or not self.publisher.connected:
            return "degraded"
        return "online"

    def status(self, state: State | None = None) -> dict[str, Any]:
        info = self.featurizer.backend_info
        pub = self.publisher.stats()
        errors = [e for e in (self.last_error, self.source.last_error, pub["last_error"]) if e]
        return build_status(
            device_id=self.config.device_id,
            state=state or self.state(),
            fps=self._fps.rate(time.monotonic()),
            backend=info.backend,
            device=info.device,
            model_id=self.featurizer.model_id,
            featurize_ms=self.timings.percentiles("featurize"),
            captured=self.source.captured,
            published=pub["sent"],
            skipped=self.skipped["rate"] + self.skipped["unchanged"] + self.source.superseded,
            dropped=pub["dropped"],
            queue_depth=pub["queue_depth"],
            source=self.source.info(),
            last_error=errors[0] if errors else None,
            # What the runtime really computes in (OpenVINO CPU runs fp32 models in bf16) and with how many
            # threads: operators compare devices by these before blaming the model.
            # and why auto chose this backend (measured ms per candidate, or cached, or the only one present).
            extra={
                "precision": info.precision,
                "threads": info.threads,
                "backend_choice": self._choice,
                "installed_runtime": self._installed,
            },
        )

    def _maybe_status(self) -> None:
        state = self.state()
        now = time.monotonic()
        if state != self._state or now - self._last_status_at >= self.config.health.status_interval_s:
            self._state = state
            self._last_status_at = now
            self._send_status()

    def _send_status(self) -> None:
        try:
            self.publisher.publish_status(self._status_topic, encode_status(self.status()))
        except Exception as exc:
            log_event(log, "status_not_sent", logging.WARNING, error=str(exc))

    def stats(self) -> dict[str, Any]:
        """Counters for logs, tests and the bench (a superset of the status message's)."""
        return {
            "processed": self.processed,
            "captured": self.source.captured,
            "superseded": self.source.superseded,
            "skipped_rate": self.skipped["rate"],
            "skipped_unchanged": self.skipped["unchanged"],
            "published_seq": self._seq - self.first_seq,
            "thumbnails": self.thumbnails.sent,
            "errors": self.errors,
            "publisher": self.publisher.stats(),
            "source": self.source.info(),
            "featurize_ms": self.timings.percentiles("featurize"),
            "frame_age_ms": self.timings.percentiles("frame_age"),
        }


def _change_vector(regions: np.ndarray) -> np.ndarray:
    """What the change gate compares: the one vector, or the normalized mean of all regions (a change anywhere in
    the frame moves it; one window alone would miss a product moving in the opposite corner)."""
    if len(regions) == 1:
        return regions[0]
    mean = regions.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else regions[0]
