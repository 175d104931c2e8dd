"""Component configuration from the Greengrass nucleus: ``GetConfiguration`` at start, and live updates.

Updates arrive through ``SubscribeToConfigurationUpdate``. The stream callback only enqueues the event:
calling IPC from inside an IPC stream callback deadlocks (a top Greengrass complaint), so a worker thread
reads the new configuration and applies it. Only the live settings (rate, threshold, heartbeat, ROI)
change without a restart; an invalid update is logged and ignored, the running settings stay.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from edge_component.config import ConfigError
from model.contracts.errors import VisualSearchError
from model.logs import log_event

log = logging.getLogger(__name__)


class GreengrassConfigError(VisualSearchError, RuntimeError):
    """The nucleus could not be reached or refused the configuration request."""


class GreengrassConfig:
    """Reads and watches this component's configuration over IPC (the real awsiotsdk client)."""

    def __init__(self, ipc: Any = None) -> None:
        if ipc is None:
            try:
                from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

                ipc = GreengrassCoreIPCClientV2()
            except Exception as exc:
                raise GreengrassConfigError(f"cannot connect to the Greengrass nucleus: {exc}") from exc
        self.ipc = ipc
        self._events: queue.Queue[list[str] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._operation: Any = None
        self.updates_applied = 0
        self.updates_rejected = 0
        self.last_error: str | None = None

    def read(self) -> dict[str, Any]:
        try:
            response = self.ipc.get_configuration(key_path=[])
        except Exception as exc:
            raise GreengrassConfigError(f"GetConfiguration failed: {exc}") from exc
        value = response.value or {}
        if not isinstance(value, dict):
            raise GreengrassConfigError(f"GetConfiguration returned {type(value).__name__}, expected an object")
        return value

    def watch(self, apply: Callable[[dict[str, Any]], object]) -> None:
        """Call ``apply(new_configuration)`` (from a worker thread) after every configuration update."""
        self._worker = threading.Thread(target=self._work, args=(apply,), name="gg-config", daemon=True)
        self._worker.start()
        _, self._operation = self.ipc.subscribe_to_configuration_update(
            key_path=[], on_stream_event=self._on_event, on_stream_error=self._on_error
        )

    def close(self) -> None:
        self._events.put(None)
        if self._worker is not None:
            self._worker.join(5)
        if self._operation is not None:
            try:
                self._operation.close()
            except Exception:
                log_event(log, "config_stream_close_failed", logging.DEBUG, exc_info=True)

    # --- callbacks: never call IPC here -----------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        update = getattr(event, "configuration_update_event", None)
        self._events.put(list(getattr(update, "key_path", None) or []))

    def _on_error(self, error: Exception) -> bool:
        log_event(log, "config_stream_error", logging.WARNING, error=str(error))
        return False  # keep the stream open

    def _work(self, apply: Callable[[dict[str, Any]], object]) -> None:
        while True:
            key_path = self._events.get()
            if key_path is None:
                return
            try:
                document = self.read()
                apply(document)
                self.updates_applied += 1
            except (ConfigError, GreengrassConfigError, ValueError) as exc:
                self.updates_rejected += 1
                self.last_error = str(exc)
                log_event(
                    log,
                    "config_update_rejected",
                    logging.ERROR,
                    key_path=key_path,
                    error=str(exc),
                )
