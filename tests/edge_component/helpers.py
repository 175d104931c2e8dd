"""Small helpers shared by the edge tests."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge_component.config import EdgeConfig, build_config
from edge_component.loop import EdgeLoop
from edge_component.publishers import Publisher, create_publisher
from edge_component.sources import FrameSource, create_source
from model.featurizer import Featurizer


def config(device_id: str = "cam-01", **layers: Any) -> EdgeConfig:
    base: dict[str, Any] = {
        "device_id": device_id,
        "live": {"max_rate_hz": 0, "change_threshold": None},
        "health": {"status_interval_s": 60},
    }
    return build_config(base, layers)


class Running:
    """An EdgeLoop in a thread, stopped and joined by ``stop()``."""

    def __init__(
        self, cfg: EdgeConfig, model: Path, source: FrameSource | None = None, publisher: Publisher | None = None
    ) -> None:
        self.featurizer = Featurizer(model, backend="onnxruntime", threads=1)
        self.source = source or create_source(cfg.source)
        self.publisher = publisher or create_publisher(cfg)
        self.loop = EdgeLoop(cfg, self.source, self.featurizer, self.publisher)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "edge loop did not finish"

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)
        self.publisher.stop(flush_timeout=5)
