"""Publisher base: a bounded outbound queue that survives disconnects, drained by one sender thread.

Semantics (exact, and tested):

- :meth:`Publisher.publish` never blocks the inference loop: it appends to a bounded queue. When the queue
  is full the *oldest* waiting message is dropped and counted (``dropped``): after an outage the cloud gets
  the most recent view, and the loss is known exactly.
- The sender thread hands messages to the transport in order, at most ``max_inflight`` unacknowledged at a
  time, and removes a message only once the transport confirms it (QoS 1 PUBACK, IPC response). Within the
  queue's capacity delivery is at-least-once and in order.
- A transport that fails a send (IPC error, timeout) gets its unacknowledged messages put back at the front,
  in order, and is reopened with exponential backoff. A transport that keeps its own in-flight messages
  across reconnects (paho with QoS 1) says so with ``retransmits_inflight`` and is simply waited for.
- Status messages and query thumbnails go through one-slot "latest wins" boxes (one per topic) and never
  displace feature messages.

Each transport is one file in this package whose publisher class carries :func:`register_publisher` and builds
itself from the configuration (``from_config``); ``publish.kind`` accepts exactly the registered kinds.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from model.contracts.errors import VisualSearchError
from model.logs import log_event
from model.plugins import load_plugins

if TYPE_CHECKING:
    from edge_component.config import EdgeConfig

log = logging.getLogger(__name__)


class PublishError(VisualSearchError, RuntimeError):
    """The transport cannot be opened or refused a message."""


@dataclass
class Outbound:
    topic: str
    payload: bytes
    seq: int | None = None
    enqueued_at: float = field(default_factory=time.monotonic)


class OutboundQueue:
    """Bounded FIFO; ``put`` on a full queue drops the oldest entry and counts it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("queue capacity must be >= 1")
        self.capacity = capacity
        self._items: deque[Outbound] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.accepted = 0

    def put(self, item: Outbound) -> Outbound | None:
        """Append; return the dropped oldest item when the queue was full."""
        with self._lock:
            dropped = None
            if len(self._items) >= self.capacity:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.accepted += 1
            return dropped

    def pop(self) -> Outbound | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def requeue_front(self, items: list[Outbound]) -> None:
        """Put unacknowledged messages back, oldest first, ahead of newer ones.

        Capacity is enforced here too, by dropping the oldest, so the queue never exceeds its bound.
        """
        with self._lock:
            self._items.extendleft(reversed(items))
            while len(self._items) > self.capacity:
                self._items.popleft()
                self.dropped += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Publisher(ABC):
    """One transport (IPC, MQTT, file...) behind the common queue and sender thread."""

    kind: ClassVar[str]

    @classmethod
    def from_config(cls, cfg: EdgeConfig, **common: Any) -> Publisher:
        """The publisher ``cfg.publish`` asks for; ``common`` holds the queue settings every transport takes."""
        return cls(cfg.device_id, **common)

    retransmits_inflight: ClassVar[bool] = False
    """True when the transport itself re-sends unacknowledged messages after a reconnect (paho QoS 1)."""

    def __init__(
        self,
        device_id: str,
        capacity: int = 100,
        qos: int = 1,
        timeout_s: float = 10.0,
        max_inflight: int = 1,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.device_id = device_id
        self.qos = qos
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.queue = OutboundQueue(capacity)
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_sent_seq: int | None = None
        self._inflight: deque[tuple[Outbound, Future[Any], float]] = deque()
        self._latest: dict[str, tuple[Outbound, int]] = {}
        """Topic → the newest message waiting for it and its QoS (status, thumbnail): latest wins."""
        self._status_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False

    # --- transport hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Connect (or start connecting). Raise :class:`PublishError` when it cannot."""

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        """Hand one message to the transport; the future completes when it is acknowledged."""

    @abstractmethod
    def _close(self) -> None: ...

    def _send_offline_status(self) -> None:  # noqa: B027 - optional hook, most transports have no last will
        """On a clean stop, say "offline" explicitly (the last will covers crashes)."""

    # --- public API --------------------------------------------------------------------------------
    def start(self) -> Publisher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"publisher-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def publish(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        dropped = self.queue.put(Outbound(topic, payload, seq))
        if dropped is not None:
            log_event(log, "queue_full_dropped_oldest", logging.DEBUG, seq=dropped.seq)
        self._wake.set()

    def publish_status(self, topic: str, payload: bytes) -> None:
        self.publish_latest(topic, payload, qos=1)

    def publish_latest(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Send ``payload`` on ``topic`` when the link allows, replacing one still waiting there (best effort)."""
        with self._status_lock:
            self._latest[topic] = (Outbound(topic, payload), qos)
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        return len(self.queue) + len(self._inflight)

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "connected": self.connected,
            "queue_depth": self.queue_depth,
            "inflight": len(self._inflight),
            "sent": self.sent,
            "dropped": self.queue.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    def flush(self, timeout: float) -> bool:
        """Wait until every queued message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._status_lock:
                latest_pending = bool(self._latest)
            if not self.queue_depth and not latest_pending:
                return True
            time.sleep(0.02)
        return False

    def stop(self, flush_timeout: float = 5.0) -> None:
        # Flush also while (re)connecting: a short run can end before the first connect completes, and its
        # queued messages must still go out (bounded by flush_timeout when the broker stays away).
        if self._thread is not None:
            self.flush(flush_timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(flush_timeout, 1.0) + self.timeout_s)
            self._thread = None
        try:
            if self._opened and self.connected:
                self._send_offline_status()
        except Exception as exc:  # best effort: the last will covers it
            log_event(log, "offline_status_not_sent", logging.WARNING, error=str(exc))
        try:
            self._close()
        except Exception:
            log_event(log, "publisher_close_failed", logging.ERROR, exc_info=True)
        self._opened = False

    # --- sender thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.reconnect_min_s
        while not self._stop.is_set():
            if not self._opened:
                try:
                    self._open()
                    self._opened = True
                    delay = self.reconnect_min_s
                except Exception as exc:
                    self._error(f"{self.kind}: cannot connect: {exc}")
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max_s)
                    continue
            try:
                progressed = self._pump()
            except Exception as exc:
                log_event(log, "publisher_pump_failed", logging.ERROR, exc_info=True)
                self._error(f"{self.kind}: {type(exc).__name__}: {exc}")
                self._reset_link()
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            if not progressed:
                self._wake.wait(0.02)
                self._wake.clear()

    def _pump(self) -> bool:
        """One round: send status, fill the window, settle the oldest in-flight message."""
        if not self.connected:
            return False
        progressed = False
        with self._status_lock:
            latest, self._latest = list(self._latest.values()), {}
        for message, qos in latest:
            future = self._send(message, qos)
            future.add_done_callback(self._status_done)
            progressed = True
        while len(self._inflight) < self.max_inflight and self.connected:
            item = self.queue.pop()
            if item is None:
                break
            self._inflight.append((item, self._send(item, self.qos), time.monotonic()))
            progressed = True
        while self._inflight:
            item, future, sent_at = self._inflight[0]
            if future.done():
                exc = future.exception()
                if exc is not None:
                    self._fail_inflight(f"{self.kind}: publish of seq {item.seq} failed: {exc}")
                    return True
                self._inflight.popleft()
                self.sent += 1
                self.last_sent_seq = item.seq
                progressed = True
                continue
            if not self.retransmits_inflight and time.monotonic() - sent_at > self.timeout_s:
                self._fail_inflight(f"{self.kind}: no acknowledgement for seq {item.seq} in {self.timeout_s:g} s")
                return True
            break
        return progressed

    def _fail_inflight(self, reason: str) -> None:
        self.failures += 1
        self._error(reason)
        items = [item for item, _, _ in self._inflight]
        self._inflight.clear()
        self.queue.requeue_front(items)
        self._reset_link()
        self._stop.wait(self.reconnect_min_s)

    def _reset_link(self) -> None:
        if self.retransmits_inflight:
            return  # the client reconnects by itself and keeps its in-flight messages
        items = [item for item, _, _ in self._inflight]
        self._inflight.clear()
        if items:
            self.queue.requeue_front(items)
        try:
            self._close()
        except Exception:
            log_event(log, "close_after_failure_failed", logging.DEBUG, exc_info=True)
        self._opened = False

    def _status_done(self, future: Future[Any]) -> None:
        if future.exception() is not None:
            log_event(log, "status_publish_failed", logging.DEBUG, error=str(future.exception()))

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log_event(log, "publisher_error", logging.WARNING, error=message)
        self.last_error = message


PUBLISHERS: dict[str, type[Publisher]] = {}
"""``publish.kind`` → publisher class; filled by :func:`register_publisher` as each module of this package loads."""
_Publisher = TypeVar("_Publisher", bound=type[Publisher])


def register_publisher(cls: _Publisher) -> _Publisher:
    PUBLISHERS[cls.kind] = cls
    return cls


def publisher_kinds() -> list[str]:
    """Every registered ``publish.kind`` (each module of this package imported once)."""
    load_plugins("edge_component.publishers")
    return sorted(PUBLISHERS)


def completed(value: Any = None, error: BaseException | None = None) -> Future[Any]:
    """A finished future, for synchronous transports."""
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future
