"""The local stand-in for the AWS IoT rule: MQTT ``visualsearch/+/features`` → the search Lambda handler.

The IoT rule is ``SELECT *, topic(2) AS topic_device FROM 'visualsearch/+/features'``: the Lambda gets
the decoded JSON payload plus ``topic_device``. This bridge builds exactly that event and calls the same
``SearchService`` the Lambda uses, once per message. Status messages go to ``handle_status_event`` the
same way. A bad message is logged and counted; it never stops the bridge.

``python -m simulator.stack.bridge --mqtt-port 1883 --ready-file F`` (settings: ``VS_*`` environment).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_component.wire import bounded_json
from edge_component.wire.codec import MAX_PAYLOAD_BYTES, TOPIC_PREFIX
from edge_component.wire.thing_name import is_thing_name

log = logging.getLogger("simulator.stack.bridge")

FEATURES_FILTER = f"{TOPIC_PREFIX}/+/features"
STATUS_FILTER = f"{TOPIC_PREFIX}/+/status"
MAX_STATUS_BYTES = 16 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class BadMessage(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def rule_event(topic: str, payload: bytes) -> tuple[str, dict[str, Any]]:
    """(kind, event) as the IoT rule would deliver it: the JSON object plus ``topic_device``."""
    parts = topic.split("/")
    if (
        len(parts) != 3
        or parts[0] != TOPIC_PREFIX
        or parts[2] not in ("features", "status")
        or not is_thing_name(parts[1])
    ):
        raise BadMessage("bad_topic", f"topic {topic[:200]!r} is not {TOPIC_PREFIX}/<device>/features|status")
    kind = parts[2]
    # IoT Core refuses a publish over 128 KB before any rule sees it: the limit is on the raw bytes.
    limit = MAX_PAYLOAD_BYTES if kind == "features" else MAX_STATUS_BYTES
    try:
        body = bounded_json.loads(payload, max_bytes=limit, what=f"{kind} message")
    except bounded_json.JsonRejected as exc:
        raise BadMessage(exc.reason, str(exc)) from None
    if not isinstance(body, dict):
        raise BadMessage("not_object", f"payload must be a JSON object, got {type(body).__name__}")
    return kind, {**body, "topic_device": parts[1]}


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
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.retry_delays_s = retry_delays_s
        self._handlers = {"features": on_features, "status": on_status}
        self.host, self.port = host, port
        self.counts = _Counts()
        self._queues: list[queue.Queue[tuple[str, bytes, int, int] | None]] = [
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
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._workers = [
            threading.Thread(target=self._work, args=(q,), name=f"bridge-worker-{n}", daemon=True)
            for n, q in enumerate(self._queues)
        ]

    # --- MQTT callbacks (network thread: enqueue only) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason)})
            return
        client.subscribe([(FEATURES_FILTER, 1), (STATUS_FILTER, 1)])
        log.info("connected", extra={"broker": f"{self.host}:{self.port}"})

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("subscription refused", extra={"reasons": [str(r) for r in reasons]})
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.subscribed.clear()
        log.warning("disconnected from broker; paho reconnects", extra={"reason": str(reason)})

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.counts.inc("received")
        # Same device → same worker: per-device order is kept, devices run in parallel.
        shard = zlib.crc32(message.topic.encode("utf-8", "replace")) % len(self._queues)
        self._queues[shard].put((message.topic, bytes(message.payload), message.mid, message.qos))

    # --- worker --------------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """One message through the rule and the handler; errors are logged and counted, never raised."""
        try:
            kind, event = rule_event(topic, payload)
        except BadMessage as exc:
            self.counts.inc(f"rejected:{exc.reason}")
            log.warning(
                "message rejected by the rule", extra={"topic": topic[:200], "reason": exc.reason, "error": str(exc)}
            )
            return None
        result: Any = None
        for attempt, delay in enumerate((*self.retry_delays_s, None)):
            try:
                result = self._handlers[kind](event)
                break
            except Exception as exc:  # the handler's own errors (Redis down) must not stop the bridge
                if delay is None:
                    self.counts.inc(f"error:{kind}")
                    log.exception("handler failed; message dropped", extra={"topic": topic, "error": str(exc)})
                    return None
                # Like an asynchronous Lambda invocation, a failed event is retried after a pause.
                self.counts.inc("retried")
                log.warning(
                    "handler failed; retrying", extra={"topic": topic, "attempt": attempt + 1, "error": str(exc)}
                )
                time.sleep(delay)
        status = str(result.get("status", "ok")) if isinstance(result, dict) else "ok"
        self.counts.inc(f"{kind}:{status}")
        return result

    def _work(self, work: queue.Queue[tuple[str, bytes, int, int] | None]) -> None:
        while True:
            item = work.get()
            if item is None:
                return
            topic, payload, mid, qos = item
            self.handle(topic, payload)
            self.counts.inc("handled")
            if self.persistent and qos > 0:
                self._client.ack(mid, qos)

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
    args = parser.parse_args(argv)
    setup_json_logging()
    service = load_search_service()
    bridge = RuleBridge(
        service.handle_feature_event,
        service.handle_status_event,
        args.mqtt_host,
        args.mqtt_port,
        workers=args.workers,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bridge.start()
    if args.ready_file:
        args.ready_file.write_text(json.dumps({"pid": threading.get_native_id(), "ts": time.time()}))
    log.info("rule bridge ready", extra={"filters": [FEATURES_FILTER, STATUS_FILTER]})
    while not stop.wait(args.stats_every):
        log.info("bridge stats", extra={"counts": bridge.counts.as_dict(), "queue": bridge.pending()})
    bridge.stop()
    log.info("rule bridge stopped", extra={"counts": bridge.counts.as_dict()})
    if args.ready_file:
        args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
