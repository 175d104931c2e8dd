"""Replay/load mode: many simulated devices publishing feature vectors at a fixed total rate.

Vectors come from a catalog index (its own vectors plus noise, so the search finds real matches), from a
``.npy`` file of pre-computed vectors, or are synthetic (random unit vectors). Each device publishes
through the edge component's own publisher (queue, QoS 1, reconnects), so the load path is the device's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_component.config import EdgeConfig, MqttConfig, PublishConfig
from edge_component.publishers import Publisher, create_publisher
from model.contracts.thing_name import check_thing_name
from model.contracts.topics import features_topic
from model.contracts.wire import FeatureMessage, encode

log = logging.getLogger(__name__)


class ReplayConfig(BaseModel):
    """What ``visual-search simulate --replay`` sends, how fast, to which broker."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    devices: int = Field(default=1, ge=1, le=10_000, description="Simulated devices, each its own MQTT client.")
    rate: float = Field(default=10.0, gt=0, le=100_000, description="Messages per second, all devices together.")
    count: int | None = Field(default=None, ge=1, description="Stop after this many messages in total.")
    duration_s: float | None = Field(default=None, gt=0, description="Stop after this many seconds.")
    device_prefix: str = Field(default="sim", description="Device ids: <prefix>-NNN (each a thing name).")
    index_dir: Path | None = Field(default=None, description="Replay noisy copies of this catalog index's vectors.")
    vectors_file: Path | None = Field(default=None, description="A .npy [N, D] of pre-computed vectors.")
    model_id: str | None = Field(
        default=None, description="Model id for --vectors/--synthetic (the index's otherwise)."
    )
    dim: int = Field(default=1280, ge=1, le=8192, description="Dimension of synthetic vectors.")
    noise: float = Field(default=0.05, ge=0, le=10, description="Gaussian noise added to each replayed vector.")
    dtype: str = Field(default="float16", pattern="^(float16|float32)$")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    seed: int = 0
    first_seq: int | None = Field(
        default=None,
        ge=0,
        description="First sequence number of each device (default: epoch milliseconds, as the edge loop does,"
        " so a re-run is not taken for redeliveries of the last one).",
    )

    @field_validator("device_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        check_thing_name(f"{value}-9999", "device_prefix + '-NNN'")  # the longest id it makes
        return value

    @model_validator(mode="after")
    def _source(self) -> ReplayConfig:
        if self.index_dir is not None and self.vectors_file is not None:
            raise ValueError("give either index_dir or vectors_file, not both")
        if self.index_dir is None and not self.model_id:
            raise ValueError("model_id is required for pre-computed or synthetic vectors (no index to read it from)")
        if self.count is None and self.duration_s is None:
            raise ValueError("give count or duration_s (or both): replay must end")
        return self

    def device_ids(self) -> list[str]:
        return [f"{self.device_prefix}-{i:03d}" for i in range(self.devices)]


def load_vectors(cfg: ReplayConfig) -> tuple[str, np.ndarray]:
    """(model_id, float32 [N, D] unit vectors) to replay."""
    if cfg.index_dir is not None:
        manifest = json.loads((cfg.index_dir / "manifest.json").read_text())
        vectors = np.load(cfg.index_dir / "vectors.npy")
        return cfg.model_id or manifest["model_id"], vectors.astype(np.float32)
    assert cfg.model_id is not None
    if cfg.vectors_file is not None:
        vectors = np.load(cfg.vectors_file)
        if vectors.ndim != 2:
            raise ValueError(f"{cfg.vectors_file} must hold a 2-D array [N, D], got shape {vectors.shape}")
        return cfg.model_id, vectors.astype(np.float32)
    rng = np.random.default_rng(cfg.seed)
    return cfg.model_id, rng.standard_normal((256, cfg.dim)).astype(np.float32)


@dataclass
class ReplayResult:
    planned: int = 0
    enqueued: int = 0
    acknowledged: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    behind_s: float = 0.0
    """How far the sender fell behind its schedule at the end (0: it kept the rate)."""
    first_ts: float = 0.0
    last_ts: float = 0.0
    per_device: dict[str, int] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        return self.enqueued / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "enqueued": self.enqueued,
            "acknowledged": self.acknowledged,
            "dropped": self.dropped,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.achieved_rate, 1),
            "behind_s": round(self.behind_s, 3),
        }


def make_publishers(cfg: ReplayConfig) -> dict[str, Publisher]:
    publishers = {}
    for device_id in cfg.device_ids():
        edge = EdgeConfig(
            device_id=device_id,
            publish=PublishConfig(kind="mqtt", qos=1, queue_capacity=100_000, dtype=cfg.dtype, mqtt=cfg.mqtt),  # type: ignore[arg-type]
        )
        publishers[device_id] = create_publisher(edge).start()
    return publishers


def initial_seq(cfg: ReplayConfig) -> int:
    """Each device's first sequence number: epoch milliseconds unless configured, like the edge loop."""
    return cfg.first_seq if cfg.first_seq is not None else int(time.time() * 1000)


def run_replay(
    cfg: ReplayConfig,
    stop: threading.Event | None = None,
    on_progress: Any = None,
    flush_timeout_s: float = 30.0,
) -> ReplayResult:
    """Publish on schedule until ``count``/``duration_s`` or ``stop``; then wait for every acknowledgement."""
    stop = stop or threading.Event()
    model_id, base = load_vectors(cfg)
    planned = cfg.count if cfg.count is not None else int(cfg.rate * (cfg.duration_s or 0))
    if cfg.count is not None and cfg.duration_s is not None:
        planned = min(cfg.count, int(cfg.rate * cfg.duration_s))
    pool = noisy_pool(base, planned, cfg.noise, cfg.seed)
    publishers = make_publishers(cfg)
    result = ReplayResult(planned=planned)
    try:
        started = time.perf_counter()
        _send_on_schedule(cfg, model_id, pool, publishers, result, stop, on_progress)
        result.behind_s = max(0.0, time.perf_counter() - (started + result.enqueued / cfg.rate))
        result.elapsed_s = time.perf_counter() - started
        deadline = time.monotonic() + flush_timeout_s
        for publisher in publishers.values():
            publisher.flush(max(0.1, deadline - time.monotonic()))
    finally:
        for device_id, publisher in publishers.items():
            stats = publisher.stats()
            result.acknowledged += int(stats["sent"])
            result.dropped += int(stats["dropped"])
            result.per_device[device_id] = int(stats["sent"])
            publisher.stop(flush_timeout=1.0)
    if on_progress is not None:
        on_progress(result.as_dict())
    return result


def noisy_pool(base: np.ndarray, planned: int, noise: float, seed: int) -> np.ndarray:
    """Noisy unit copies of catalog vectors, normalized once up front so the send loop only encodes."""
    rng = np.random.default_rng(seed)
    pool_size = min(max(planned, 1), 4096)
    picks = base[rng.integers(0, len(base), pool_size)]
    pool = picks + rng.standard_normal(picks.shape).astype(np.float32) * (noise / np.sqrt(picks.shape[1]))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    return pool


def _send_on_schedule(
    cfg: ReplayConfig,
    model_id: str,
    pool: np.ndarray,
    publishers: dict[str, Publisher],
    result: ReplayResult,
    stop: threading.Event,
    on_progress: Any,
) -> None:
    """Message ``k`` is due ``k / rate`` seconds after the start, round-robin over the devices."""
    device_ids = cfg.device_ids()
    seqs = dict.fromkeys(device_ids, initial_seq(cfg))
    started = time.perf_counter()
    next_report = started + 1.0
    for k in range(result.planned):
        if stop.is_set():
            break
        wait = started + k / cfg.rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        device_id = device_ids[k % len(device_ids)]
        seq = seqs[device_id]
        seqs[device_id] = seq + 1
        ts = time.time()
        message = FeatureMessage(
            device_id=device_id,
            seq=seq,
            ts=ts,
            model_id=model_id,
            vector=pool[k % len(pool)],
            dtype=cfg.dtype,  # type: ignore[arg-type]
            timing_ms={"replay": 0.0},
        )
        publishers[device_id].publish(features_topic(device_id), encode(message), seq)
        result.enqueued += 1
        result.first_ts = result.first_ts or ts
        result.last_ts = ts
        now = time.perf_counter()
        if on_progress is not None and now >= next_report:
            next_report = now + 1.0
            on_progress(_totals(publishers, result, now - started))


def _totals(publishers: dict[str, Publisher], result: ReplayResult, elapsed: float) -> dict[str, Any]:
    sent = dropped = queued = 0
    for publisher in publishers.values():
        stats = publisher.stats()
        sent += int(stats["sent"])
        dropped += int(stats["dropped"])
        queued += int(stats["queue_depth"])
    return {
        "enqueued": result.enqueued,
        "acknowledged": sent,
        "dropped": dropped,
        "queue": queued,
        "rate": round(result.enqueued / elapsed, 1) if elapsed > 0 else 0.0,
    }
