"""stdout and file publishers, for debugging: one JSON line per message ``{"topic":..., "payload":...}``."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TextIO

from edge_component.config import EdgeConfig
from edge_component.publishers.base import Outbound, Publisher, PublishError, completed, register_publisher


def _line(item: Outbound) -> str:
    try:
        payload: Any = json.loads(item.payload)
    except ValueError:
        payload = item.payload.decode("utf-8", errors="replace")
    return json.dumps({"topic": item.topic, "payload": payload}, separators=(",", ":")) + "\n"


@register_publisher
class StdoutPublisher(Publisher):
    kind = "stdout"

    def __init__(self, device_id: str, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _open(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True

    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        with self._lock:
            self._stream.write(_line(item))
            self._stream.flush()
        return completed()

    def _close(self) -> None:
        pass


@register_publisher
class FilePublisher(Publisher):
    kind = "file"

    @classmethod
    def from_config(cls, cfg: EdgeConfig, **common: Any) -> FilePublisher:
        assert cfg.publish.file_path is not None  # checked by PublishConfig
        return cls(cfg.device_id, cfg.publish.file_path, **common)

    def __init__(self, device_id: str, path: str, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self.path = Path(path)
        self._handle: TextIO | None = None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open while running
        except OSError as exc:
            raise PublishError(f"cannot open {self.path}: {exc}") from exc

    @property
    def connected(self) -> bool:
        return self._handle is not None

    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        if self._handle is None:
            return completed(error=PublishError("file is closed"))
        try:
            self._handle.write(_line(item))
            self._handle.flush()
        except OSError as exc:
            return completed(error=PublishError(f"write to {self.path} failed: {exc}"))
        return completed()

    def _close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()
