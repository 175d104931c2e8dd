"""The local stand-in for the AWS IoT rule: MQTT ``visualsearch/+/features`` → the search Lambda handler.

The IoT rule is ``SELECT *, topic(2) AS topic_device FROM 'visualsearch/+/features'``: the Lambda gets
the decoded JSON payload plus ``topic_device``. This bridge builds exactly that event and calls the same
``SearchService`` the Lambda uses, once per message. Status messages go to ``handle_status_event`` the
same way. A bad message is logged and counted; it never stops the bridge.

``python -m simulator.stack.bridge --mqtt-port 1883 --ready-file F`` (settings: ``VS_*`` environment).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import queue
import signal
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from model.contracts import bounded_json
from model.contracts.errors import Rejected
from model.contracts.limits import MAX_PAYLOAD_BYTES, MAX_STATUS_BYTES
from model.contracts.topics import Kind, parse_topic, topic_filter
from model.logs import log_event
from simulator.stack.spool import DEFAULT_MAX_BYTES, Spool, SpoolError

log = logging.getLogger(__name__)

FEATURES_FILTER = topic_filter("features")
STATUS_FILTER = topic_filter("status")
THUMBNAIL_FILTER = topic_filter("thumbnail")
KINDS: tuple[Kind, ...] = ("features", "status", "thumbnail")
DEAD_LETTER = "dead-letter.jsonl"

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def rule_event(topic: str, payload: bytes) -> tuple[str, dict[str, Any]]:
    """(kind, event) as the IoT rule would deliver it: the JSON object plus ``topic_device``."""
    device_id, kind = parse_topic(topic, KINDS)
    # IoT Core refuses a publish over 128 KB before any rule sees it: the limit is on the raw bytes.
    # Thumbnails: the same 16 KB bound as status (model.contracts.thumbnail.MAX_MESSAGE_BYTES).
    limit = MAX_PAYLOAD_BYTES if kind == "features" else MAX_STATUS_BYTES
    body = bounded_json.loads(payload, max_bytes=limit, what=f"{kind} message")
    if not isinstance(body, dict):
        raise Rejected("not_object", f"payload must be a JSON object, got {type(body).__name__}")
    return kind, {**body, "topic_device": device_id}


class _Counts:
    """A Counter shared by the worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class Outcome:
    settled: bool
    result: dict[str, Any] | None = None


class ReplaySchedule:
    """When a worker next tries its spool: at once while the store takes the messages; after a refusal, after a
    pause that doubles up to a cap (like the retries of an asynchronous Lambda invocation), so a store that
    refuses writes is not hammered, and one that is back is used within the cap."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._pause = first_s
        self._due = float("-inf")

    def due(self, now: float) -> bool:
        return now >= self._due

    def wait_s(self, now: float) -> float:
        """How long the worker may block on its queue before the next replay is due."""
        return max(0.0, self._due - now)

    def refused(self, now: float) -> None:
        self._due = now + self._pause
        self._pause = min(self._pause * 2, self.max_s)

    def drained(self) -> None:
        self._pause = self.first_s
        self._due = float("-inf")


class MemorySpool:
    """The spool's interface in memory, for a bridge without a spool folder (tests of the per-message path)."""

    def __init__(self) -> None:
        self._items: deque[tuple[str, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, topic: str, payload: bytes) -> bool:
        self._items.append((topic, payload))
        return True

    def peek(self) -> tuple[str, bytes] | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        self._items.popleft()

    def close(self) -> None:
        pass


def open_spool(folder: Path | None, n: int, max_bytes: int) -> Spool | MemorySpool:
    return MemorySpool() if folder is None else Spool(folder / f"worker-{n}", max_bytes)


def check_leftover_spools(folder: Path | None, workers: int) -> None:
    """A device's messages go to worker ``crc32(topic) % workers``: spools of workers this run does not have
    would never be replayed, so refuse to start rather than strand them."""
    if folder is None or not folder.is_dir():
        return
    stranded = [
        path.parent.name
        for path in folder.glob("worker-*/spool.bin")
        if path.stat().st_size and not _worker_index(path.parent.name) < workers
    ]
    if stranded:
        raise SpoolError(
            f"spool folder {folder} holds unreplayed messages of {', '.join(sorted(stranded))} from a run with more"
            " workers: start with as many --workers so they are replayed"
        )


def _worker_index(name: str) -> int:
    suffix = name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 1 << 30


def write_dead_letter(folder: Path | None, topic: str, payload: bytes, exc: Exception) -> None:
    """Keep a message no handler can take (a bug, not an outage) where an operator can find and replay it."""
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"ts": time.time(), "topic": topic, "payload_b64": base64.b64encode(payload).decode(), "error": str(exc)}
    with open(folder / DEAD_LETTER, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class RuleBridge:
    """Subscribes, queues, and calls the handlers on worker threads (the MQTT network thread stays free).

    Like concurrent Lambda invocations, several workers run the handler at once: each handler call spends
    most of its time waiting on Redis and on the match publish, so one worker caps the stack at ~200
    messages/s on a 2-core laptop. A device's messages always go to the same worker, so its records are
    written in the order it sent them. Messages are subscribed at QoS 1 and queued in arrival order; a slow
    search delays, never drops, and a crash of the bridge loses at most what is queued.
    """

    def __init__(
        self,
        on_features: Handler,
        on_status: Handler,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "visualsearch-rule-bridge",
        queue_size: int = 100_000,
        retry_delays_s: tuple[float, ...] = (0.2, 1.0, 3.0),
        workers: int = 8,
        persistent: bool = True,
        spool_dir: Path | None = None,
        transient: tuple[type[BaseException], ...] = (Exception,),
        replay_backoff_s: tuple[float, float] = (0.5, 5.0),
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        username: str | None = None,
        password: str | None = None,
        on_thumbnail: Handler | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.retry_delays_s = retry_delays_s
        self.transient = transient
        self.replay_backoff_s = replay_backoff_s
        self.spool_dir = spool_dir
        check_leftover_spools(spool_dir, workers)
        self._spools = [open_spool(spool_dir, n, spool_max_bytes) for n in range(workers)]
        self._handlers = {"features": on_features, "status": on_status}
        if on_thumbnail is not None:
            self._handlers["thumbnail"] = on_thumbnail
        self.host, self.port = host, port
        self.counts = _Counts()
        # Messages carry the number of the connection they arrived on: a PUBACK is only meaningful on that
        # connection (after a reconnect the broker resends what was not acked, and reuses packet ids, so acking
        # an old mid on the new connection could acknowledge another message that was never handled).
        self._connection = 0
        self._queues: list[queue.Queue[tuple[str, bytes, int, int, int] | None]] = [
            queue.Queue(maxsize=queue_size) for _ in range(workers)
        ]
        self.subscribed = threading.Event()
        # Like an IoT rule, the bridge must not miss what arrives while it restarts: a persistent session makes
        # the broker queue messages for it, and acking only after the handler returns makes the broker
        # redeliver whatever a killed bridge had received but not finished (the idempotency check refuses
        # the repeats).
        self.persistent = persistent
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        if persistent:
            self._client.manual_ack_set(True)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._workers = [
            threading.Thread(target=self._work, args=(n,), name=f"bridge-worker-{n}", daemon=True)
            for n in range(workers)
        ]

    # --- MQTT callbacks (network thread: enqueue only) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connection += 1
        if reason.is_failure:
            log_event(log, "broker_refused_connection", logging.ERROR, reason=str(reason))
            return
        filters = [(FEATURES_FILTER, 1), (STATUS_FILTER, 1)]
        client.subscribe([*filters, (THUMBNAIL_FILTER, 0)] if "thumbnail" in self._handlers else filters)
        log_event(log, "connected", broker=f"{self.host}:{self.port}")

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log_event(log, "subscription_refused", logging.ERROR, reasons=[str(r) for r in reasons])
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.subscribed.clear()
        log_event(log, "broker_disconnected", logging.WARNING, reason=str(reason))

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.counts.inc("received")
        if message.retain:
            # Sent because we (re)subscribed, not because a device published now: an IoT rule never sees it,
            # and a stale retained status must not refresh a dead device's "last seen".
            self.counts.inc("skipped:retained")
            self._ack(message.mid, message.qos, self._connection)
            return
        # Same device → same worker: per-device order is kept, devices run in parallel.
        shard = zlib.crc32(message.topic.encode("utf-8", "replace")) % len(self._queues)
        self._queues[shard].put((message.topic, bytes(message.payload), message.mid, message.qos, self._connection))

    # --- worker --------------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """One message through the rule and the handler (with retries); errors are logged and counted, never
        raised. None for a rejected message, or one the store could not take (the worker parks it)."""
        return self._settle(topic, payload, retry=True).result

    def _settle(self, topic: str, payload: bytes, retry: bool) -> Outcome:
        """Settled: handled, rejected with a reason, or dead-lettered. Deferred: the store could not take it."""
        try:
            kind, event = rule_event(topic, payload)
        except Rejected as exc:
            self.counts.inc(f"rejected:{exc.reason}")
            log_event(
                log,
                "rule_rejected",
                logging.WARNING,
                topic=topic[:200],
                reason=exc.reason,
                error=str(exc),
            )
            return Outcome(settled=True)
        if kind not in self._handlers:  # a bridge built without a thumbnail handler (tests) ignores them
            self.counts.inc(f"ignored:{kind}")
            return Outcome(settled=True)
        delays = (*self.retry_delays_s, None) if retry else (None,)
        for attempt, delay in enumerate(delays):
            try:
                result = self._handlers[kind](event)
                break
            except Exception as exc:  # the handler's own errors (Redis down) must not stop the bridge
                if delay is None:
                    return self._failed(topic, payload, kind, exc)
                # Like an asynchronous Lambda invocation, a failed event is retried after a pause.
                self.counts.inc("retried")
                log_event(log, "handler_retrying", logging.WARNING, topic=topic, attempt=attempt + 1, error=str(exc))
                time.sleep(delay)
        status = str(result.get("status", "ok"))
        self.counts.inc(f"{kind}:{status}")
        return Outcome(settled=True, result=result)

    def _failed(self, topic: str, payload: bytes, kind: str, exc: Exception) -> Outcome:
        if isinstance(exc, self.transient):
            self.counts.inc("store_unavailable")
            log_event(log, "store_unavailable_kept", logging.WARNING, topic=topic[:200], error=str(exc)[:300])
            return Outcome(settled=False)
        # Not the store: this message would fail every replay and hold back its device's later ones.
        self.counts.inc(f"error:{kind}")
        self.counts.inc("dead_letter")
        log_event(log, "message_dead_lettered", logging.ERROR, topic=topic[:200], error=str(exc), exc_info=True)
        write_dead_letter(self.spool_dir, topic, payload, exc)
        return Outcome(settled=True)

    def _work(self, n: int) -> None:
        work, spool = self._queues[n], self._spools[n]
        schedule = ReplaySchedule(*self.replay_backoff_s)
        while True:
            if len(spool) and schedule.due(time.monotonic()):
                if self._replay(spool):
                    schedule.drained()
                else:
                    schedule.refused(time.monotonic())
            try:
                # Parked messages wait for the next replay, not for the next message: a silent device's are
                # replayed too.
                item = work.get(timeout=schedule.wait_s(time.monotonic()) if len(spool) else None)
            except queue.Empty:
                continue
            if item is None:
                return
            topic, payload, mid, qos, connection = item
            # Behind older parked messages of the same worker (its devices): park it too, so records keep the
            # order in which messages first arrived.
            settled = not len(spool) and self._settle(topic, payload, retry=True).settled
            if settled:
                self.counts.inc("handled")
            elif not spool.append(topic, payload):
                self.counts.inc("unacked:spool_full")
                log_event(log, "spool_full_left_unacked", logging.ERROR, topic=topic[:200])
                continue  # no ack: the broker redelivers it after the next reconnect
            else:
                self.counts.inc("spooled")
                log_event(log, "message_spooled", topic=topic[:200], spool_depth=len(spool))
            self._ack(mid, qos, connection)

    def _replay(self, spool: Spool | MemorySpool) -> bool:
        """Oldest parked messages first, until the spool is empty (True) or the store refuses again (False)."""
        while (head := spool.peek()) is not None:
            if not self._settle(*head, retry=False).settled:
                return False
            spool.pop()
            self.counts.inc("replayed")
            self.counts.inc("handled")
        return True

    def _ack(self, mid: int, qos: int, connection: int) -> None:
        if not self.persistent or qos == 0:
            return
        if connection != self._connection:
            # Arrived before a reconnect: the broker has resent it (it is handled again, a duplicate).
            self.counts.inc("ack_skipped:reconnected")
            return
        self._client.ack(mid, qos)

    def spool_depth(self) -> int:
        return sum(len(spool) for spool in self._spools)

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        for worker in self._workers:
            worker.start()
        self._client.reconnect_delay_set(1, 5)
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"no subscription acknowledged by {self.host}:{self.port} after {timeout:.0f} s")

    def pending(self) -> int:
        return sum(q.qsize() for q in self._queues)

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop receiving, let the worker finish what is queued (up to ``drain_timeout``), then stop."""
        self._client.disconnect()
        self._client.loop_stop()
        deadline = time.monotonic() + drain_timeout
        for work, worker in zip(self._queues, self._workers, strict=True):
            if worker.is_alive():
                work.put(None)
                worker.join(max(0.1, deadline - time.monotonic()))
        for spool, worker in zip(self._spools, self._workers, strict=True):
            if not worker.is_alive():
                spool.close()


def load_search_service() -> Any:
    """The search Lambda's service, configured from ``VS_*`` exactly as in AWS."""
    from cloud_lambda.search.service import SearchService
    from cloud_lambda.settings import CloudSettings

    return SearchService(CloudSettings.from_env())


def main(argv: list[str] | None = None) -> int:
    from model.logs import setup_logging as setup_json_logging

    parser = argparse.ArgumentParser(prog="python -m simulator.stack.bridge", description=__doc__)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--ready-file", type=Path, help="written once subscribed and the search index is loaded")
    parser.add_argument("--stats-every", type=float, default=30.0, help="seconds between stats log lines")
    parser.add_argument("--workers", type=int, default=8, help="handler threads (concurrent invocations)")
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path("spool"),
        help="where messages the store cannot take yet are kept until it can (default: ./spool)",
    )
    args = parser.parse_args(argv)
    setup_json_logging()
    from cloud_lambda.matches import MatchStoreUnavailable

    service = load_search_service()
    try:
        bridge = RuleBridge(
            service.handle_feature_event,
            service.handle_status_event,
            args.mqtt_host,
            args.mqtt_port,
            workers=args.workers,
            spool_dir=args.spool_dir.resolve(),
            transient=(MatchStoreUnavailable,),
            # Set by `stack up` on a non-loopback host (simulator.stack.auth); from the environment, never argv.
            username=service.settings.mqtt_username,
            password=service.settings.mqtt_password.get_secret_value() if service.settings.mqtt_password else None,
            on_thumbnail=service.handle_thumbnail_event,
        )
    except SpoolError as exc:
        log_event(log, "rule_bridge_cannot_start", logging.ERROR, error=str(exc))
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bridge.start()
    if args.ready_file:
        args.ready_file.write_text(json.dumps({"pid": threading.get_native_id(), "ts": time.time()}))
    log_event(log, "rule_bridge_ready", filters=[FEATURES_FILTER, STATUS_FILTER, THUMBNAIL_FILTER])
    while not stop.wait(args.stats_every):
        log_event(
            log,
            "bridge_stats",
            counts=bridge.counts.as_dict(),
            queue=bridge.pending(),
            spool_depth=bridge.spool_depth(),
        )
    bridge.stop()
    log_event(log, "rule_bridge_stopped", counts=bridge.counts.as_dict(), spool_depth=bridge.spool_depth())
    if args.ready_file:
        args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
