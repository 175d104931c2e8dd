"""The rule bridge's ack and spool rules, one worker driven by hand (no broker): when a message is acked, when it
waits in the spool, in which order it is replayed, and where a message no handler can take goes."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_lambda.matches import MatchStoreUnavailable
from model.contracts.errors import Rejected
from model.contracts.limits import MAX_PAYLOAD_BYTES, MAX_STATUS_BYTES
from simulator.stack.bridge import (
    DEAD_LETTER,
    ReplaySchedule,
    RuleBridge,
    check_leftover_spools,
    rule_event,
    write_dead_letter,
)
from simulator.stack.spool import Spool, SpoolError
from tests.wait import wait_for

FEATURES = "visualsearch/cam-1/features"
STATUS = "visualsearch/cam-1/status"


class Store:
    """A handler whose outcomes are scripted: 'ok', 'down' (MatchStoreUnavailable) or 'bug' (a bug)."""

    def __init__(self, script: list[str] | None = None, default: str = "ok") -> None:
        self.script = list(script or [])
        self.default = default
        self.stored: list[int] = []
        self.calls = 0

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else self.default
        if outcome == "down":
            raise MatchStoreUnavailable("redis write failed: OOM command not allowed")
        if outcome == "bug":
            raise KeyError("a bug")
        self.stored.append(event["seq"])
        return {"status": "accepted"}


def bridge_with(store: Callable[[dict[str, Any]], dict[str, Any]], tmp_path: Path | None, **kw: Any) -> RuleBridge:
    bridge = RuleBridge(
        store,
        store,
        workers=1,
        retry_delays_s=kw.pop("retry_delays_s", (0.0, 0.0)),
        replay_backoff_s=kw.pop("replay_backoff_s", (0.0, 0.0)),
        spool_dir=tmp_path,
        transient=(MatchStoreUnavailable,),
        client_id="t",
        **kw,
    )
    bridge.acked: list[int] = []  # type: ignore[misc]
    bridge.acks: list[tuple[int, int]] = []  # type: ignore[misc]

    def ack(mid: int, qos: int) -> None:  # paho's Client.ack(mid, qos): a PUBACK only for qos 1, PUBCOMP for 2
        bridge.acked.append(mid)
        bridge.acks.append((mid, qos))

    bridge._client.ack = ack  # type: ignore[method-assign]
    return bridge


def drive(bridge: RuleBridge, messages: list[tuple[str, int] | tuple[str, int, int]]) -> None:
    """Queue ``(topic, seq[, qos])`` messages (mid = seq), then run the worker until its queue is done."""
    for message in messages:
        topic, seq, qos = (*message, 1) if len(message) == 2 else message
        bridge._queues[0].put((topic, json.dumps({"seq": seq}).encode(), seq, qos, bridge._connection))
    bridge._queues[0].put(None)
    bridge._work(0)


def test_a_stored_or_rejected_message_is_acked(tmp_path: Path) -> None:
    store = Store()
    bridge = bridge_with(store, tmp_path)
    drive(bridge, [(FEATURES, 1), ("visualsearch/cam.1/features", 2), (STATUS, 3)])
    assert bridge.acked == [1, 2, 3] and store.stored == [1, 3]
    assert bridge.counts["handled"] == 3 and bridge.counts["rejected:bad_topic"] == 1
    assert bridge.counts["features:accepted"] == 1 and bridge.counts["status:accepted"] == 1
    assert bridge.spool_depth() == 0 and bridge.counts["spooled"] == 0


def test_retries_come_first_and_spare_the_spool(tmp_path: Path) -> None:
    store = Store(["down", "down", "ok"])
    bridge = bridge_with(store, tmp_path)
    assert bridge.handle(FEATURES, b'{"seq": 1}') == {"status": "accepted"}
    assert bridge.counts["retried"] == 2 and store.calls == 3 and bridge.spool_depth() == 0


def test_a_message_the_store_refuses_is_spooled_then_acked_and_later_ones_queue_behind_it(tmp_path: Path) -> None:
    # 1: refused on its three attempts and on the first replay → spooled. 2 arrives while 1 waits: spooled behind
    # it, unseen by the store. Then the store is back: 1, 2 replayed, 3 handled directly: order of first arrival.
    store = Store(["down", "down", "down", "down"])
    bridge = bridge_with(store, tmp_path)
    drive(bridge, [(FEATURES, 1), (FEATURES, 2), (FEATURES, 3)])
    assert bridge.acked == [1, 2, 3]  # acked once stored or durable in the spool
    assert store.stored == [1, 2, 3] and bridge.spool_depth() == 0 and store.calls == 7
    assert bridge.counts["spooled"] == 2 and bridge.counts["replayed"] == 2 and bridge.counts["handled"] == 3
    assert bridge.counts["store_unavailable"] == 2 and bridge.counts["error:features"] == 0


def test_replay_stops_at_the_first_refusal_and_keeps_the_rest_in_order(tmp_path: Path) -> None:
    store = Store(["down", "down", "down"], default="down")
    bridge = bridge_with(store, tmp_path)
    drive(bridge, [(FEATURES, 1), (FEATURES, 2)])
    assert bridge.spool_depth() == 2 and store.stored == [] and bridge.acked == [1, 2]
    spool = Spool(tmp_path / "worker-0")
    assert [spool.peek()] == [(FEATURES, b'{"seq": 1}')]
    spool.close()
    # A restarted bridge (same spool folder) replays them once the store takes writes.
    store.default = "ok"
    again = bridge_with(store, tmp_path)
    drive(again, [(FEATURES, 3)])
    assert store.stored == [1, 2, 3] and again.spool_depth() == 0 and again.acked == [3]


def test_a_bug_is_dead_lettered_not_spooled(tmp_path: Path) -> None:
    store = Store(["bug", "bug", "bug"])
    bridge = bridge_with(store, tmp_path)
    drive(bridge, [(FEATURES, 1), (FEATURES, 2)])
    assert bridge.acked == [1, 2] and store.stored == [2] and bridge.spool_depth() == 0
    assert bridge.counts["dead_letter"] == 1 and bridge.counts["error:features"] == 1
    (entry,) = [json.loads(line) for line in (tmp_path / DEAD_LETTER).read_text().splitlines()]
    assert entry["topic"] == FEATURES and base64.b64decode(entry["payload_b64"]) == b'{"seq": 1}'
    assert "a bug" in entry["error"]


def test_a_full_spool_leaves_the_message_unacked_with_the_broker(tmp_path: Path) -> None:
    store = Store(default="down")
    bridge = bridge_with(store, tmp_path, spool_max_bytes=60)  # one 45-byte record fits, two do not
    drive(bridge, [(FEATURES, 1), (FEATURES, 2)])
    assert bridge.acked == [1] and bridge.spool_depth() == 1
    assert bridge.counts["unacked:spool_full"] == 1 and bridge.counts["spooled"] == 1


def test_qos_0_and_a_clean_session_are_never_acked(tmp_path: Path) -> None:
    store = Store()
    bridge = bridge_with(store, tmp_path)
    drive(bridge, [(FEATURES, 1, 0), (FEATURES, 2, 1)])
    assert bridge.acked == [2] and store.stored == [1, 2]
    volatile = bridge_with(store, None, persistent=False)
    drive(volatile, [(FEATURES, 3, 1)])
    assert volatile.acked == []


def test_a_message_from_before_a_reconnect_is_handled_but_not_acked(tmp_path: Path) -> None:
    """Its packet id belongs to the old connection: the broker resends it, and may reuse the id for another."""
    store = Store()
    bridge = bridge_with(store, tmp_path)
    old = bridge._connection
    bridge._queues[0].put((FEATURES, b'{"seq": 1}', 1, 1, old))
    bridge._connection += 1  # reconnected while message 1 waited in the queue
    drive(bridge, [(FEATURES, 2)])
    assert store.stored == [1, 2] and bridge.acked == [2] and bridge.counts["ack_skipped:reconnected"] == 1


def test_a_retained_message_is_acked_and_skipped(tmp_path: Path) -> None:
    class Message:
        topic, payload, mid, qos, retain = STATUS, b'{"seq": 5}', 5, 1, True

    store = Store()
    bridge = bridge_with(store, tmp_path)
    bridge._on_message(None, None, Message())  # type: ignore[arg-type]
    assert bridge.acks == [(5, 1)] and bridge.pending() == 0 and bridge.counts["skipped:retained"] == 1
    Message.retain = False
    bridge._on_message(None, None, Message())  # type: ignore[arg-type]
    assert bridge.pending() == 1 and bridge.counts["received"] == 2


def test_messages_of_workers_a_run_no_longer_has_are_not_stranded(tmp_path: Path) -> None:
    Spool(tmp_path / "worker-3").append(FEATURES, b"{}")
    Spool(tmp_path / "worker-1").close()  # an empty one is fine
    (tmp_path / "worker-x").mkdir()
    with pytest.raises(SpoolError, match="worker-3"):
        check_leftover_spools(tmp_path, 2)
    check_leftover_spools(tmp_path, 4)
    check_leftover_spools(None, 1)
    check_leftover_spools(tmp_path / "missing", 1)
    with pytest.raises(ValueError):
        RuleBridge(Store(), Store(), workers=0)


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("visualsearch/cam-1/features/x", b"{}", "bad_topic"),
        ("other/cam-1/features", b"{}", "bad_topic"),
        ("visualsearch/cam-1/matches", b"{}", "bad_topic"),
        ("visualsearch//features", b"{}", "bad_topic"),
        (FEATURES, b" " * MAX_PAYLOAD_BYTES + b"{}", "oversize"),
        (STATUS, b" " * MAX_STATUS_BYTES + b"{}", "oversize"),
        (FEATURES, b"[1]", "not_object"),
        (FEATURES, b"{", "not_json"),
    ],
)
def test_the_rule_refuses(topic: str, payload: bytes, code: str) -> None:
    with pytest.raises(Rejected) as refused:
        rule_event(topic, payload)
    assert refused.value.reason == code


def test_the_rule_event_is_the_payload_plus_the_topic_device() -> None:
    fits_features = b"{" + b" " * (MAX_PAYLOAD_BYTES - 2) + b"}"
    fits_status = b"{" + b" " * (MAX_STATUS_BYTES - 2) + b"}"
    assert rule_event(FEATURES, fits_features) == ("features", {"topic_device": "cam-1"})
    assert rule_event(STATUS, fits_status) == ("status", {"topic_device": "cam-1"})
    assert rule_event(FEATURES, b'{"seq": 3, "topic_device": "x"}') == ("features", {"seq": 3, "topic_device": "cam-1"})


def test_every_outcome_is_logged_with_its_fields(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Structured log lines are how an operator (and `make chaos`) sees what the bridge did with a message."""
    import logging

    caplog.set_level(logging.INFO, logger="simulator.stack.bridge")
    store = Store(["down", "bug", "bug"], default="down")
    bridge = bridge_with(store, tmp_path, retry_delays_s=(0.0,), spool_max_bytes=60)
    drive(bridge, [("visualsearch/cam.1/features", 1), (FEATURES, 2), (FEATURES, 3), (FEATURES, 4)])
    lines = [
        (
            r.getMessage(),
            {k: v for k, v in vars(r).get("fields", {}).items() if k in ("topic", "reason", "attempt", "spool_depth")},
        )
        for r in caplog.records
    ]
    assert ("rule_rejected", {"topic": "visualsearch/cam.1/features", "reason": "bad_topic"}) in lines
    assert ("handler_retrying", {"topic": FEATURES, "attempt": 1}) in lines
    assert ("store_unavailable_kept", {"topic": FEATURES}) in lines
    assert ("message_dead_lettered", {"topic": FEATURES}) in lines
    assert ("message_spooled", {"topic": FEATURES, "spool_depth": 1}) in lines
    assert ("spool_full_left_unacked", {"topic": FEATURES}) in lines
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert {r.getMessage() for r in errors} == {
        "message_dead_lettered",
        "spool_full_left_unacked",
    }
    assert all(
        r.levelno == logging.WARNING
        for r in caplog.records
        if r.getMessage() in ("rule_rejected", "handler_retrying", "store_unavailable_kept")
    )


def test_the_ack_carries_the_message_qos(tmp_path: Path) -> None:
    """paho's ``Client.ack(mid, qos)`` sends a PUBACK only for qos 1 (PUBCOMP for 2): another qos acks nothing."""
    bridge = bridge_with(Store(), tmp_path)
    drive(bridge, [(FEATURES, 1, 1), (FEATURES, 2, 2)])
    assert bridge.acks == [(1, 1), (2, 2)]


def test_a_parked_message_is_replayed_when_the_store_is_back_though_its_device_is_silent(tmp_path: Path) -> None:
    store = Store(default="down")
    bridge = bridge_with(store, tmp_path, replay_backoff_s=(0.01, 0.05))
    worker = threading.Thread(target=bridge._work, args=(0,), daemon=True)
    worker.start()
    try:
        bridge._queues[0].put((FEATURES, b'{"seq": 1}', 1, 1, bridge._connection))
        bridge._queues[0].put((FEATURES, b'{"seq": 2}', 2, 1, bridge._connection))
        wait_for(lambda: bridge.spool_depth() == 2, 10, "both messages parked")
        assert bridge.acked == [1, 2] and store.stored == []
        store.default = "ok"  # no message arrives after this: the replay alone must store them
        wait_for(lambda: store.stored == [1, 2], 10, "the parked messages replayed in order")
        assert bridge.spool_depth() == 0
    finally:
        bridge._queues[0].put(None)
        worker.join(10)
    assert not worker.is_alive()


def test_replays_after_a_refusal_wait_a_pause_that_doubles_up_to_a_cap() -> None:
    schedule = ReplaySchedule(0.5, 2.0)
    assert schedule.due(0.0) and schedule.wait_s(0.0) == 0.0
    due_times = []
    now = 10.0
    for _ in range(4):
        schedule.refused(now)
        assert not schedule.due(now) and schedule.wait_s(now) > 0
        now += schedule.wait_s(now)
        assert schedule.due(now)
        due_times.append(now)
    assert due_times == [10.5, 11.5, 13.5, 15.5]  # pauses 0.5, 1, 2, then the cap
    schedule.drained()  # the store took everything: the next parked message is tried at once
    assert schedule.due(now) and schedule.wait_s(now) == 0.0
    schedule.refused(now)
    assert schedule.wait_s(now) == 0.5


def test_a_full_spool_refuses_one_message_not_the_ones_after_it(tmp_path: Path) -> None:
    # 1: refused 3 times → spooled. 2: parked behind it, but the spool is full → left unacked with the broker.
    # Then the store is back: 1 replayed, 3 handled. 2 comes back from the broker after a reconnect.
    store = Store(["down", "down", "down", "down"])
    bridge = bridge_with(store, tmp_path, spool_max_bytes=60)
    drive(bridge, [(FEATURES, 1), (FEATURES, 2), (FEATURES, 3)])
    assert store.stored == [1, 3] and bridge.acked == [1, 3] and bridge.spool_depth() == 0
    assert bridge.counts["unacked:spool_full"] == 1


def test_a_kind_with_no_handler_is_settled_not_parked(tmp_path: Path) -> None:
    store = Store(default="down")
    bridge = bridge_with(store, tmp_path)  # no thumbnail handler
    drive(bridge, [("visualsearch/cam-1/thumbnail", 1)])
    assert bridge.acked == [1] and store.calls == 0 and bridge.spool_depth() == 0
    assert bridge.counts["ignored:thumbnail"] == 1


def test_a_handler_answer_without_a_status_counts_as_ok(tmp_path: Path) -> None:
    bridge = bridge_with(lambda event: {}, tmp_path)
    drive(bridge, [(FEATURES, 1)])
    assert bridge.counts["features:ok"] == 1 and bridge.acked == [1]


@pytest.mark.parametrize(("name", "workers"), [("worker-2", 2), ("worker-x", 8)])
def test_a_spool_no_worker_of_this_run_replays_is_refused_with_the_fix(tmp_path: Path, name: str, workers: int) -> None:
    Spool(tmp_path / name).append(FEATURES, b"{}")
    with pytest.raises(SpoolError) as refused:
        check_leftover_spools(tmp_path, workers)
    assert name in str(refused.value) and "start with as many --workers so they are replayed" in str(refused.value)


def test_a_dead_letter_entry_holds_what_an_operator_needs_to_replay_it(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "spool"  # created with its parents
    bridge = bridge_with(Store(["bug", "bug", "bug"]), folder)
    before = time.time()
    drive(bridge, [(FEATURES, 1)])
    (entry,) = [json.loads(line) for line in (folder / DEAD_LETTER).read_text().splitlines()]
    assert set(entry) == {"ts", "topic", "payload_b64", "error"}
    assert before <= entry["ts"] <= time.time() and entry["error"] == "'a bug'"


def test_the_rule_refusal_says_which_message_and_why() -> None:
    for topic, payload, words in [
        (FEATURES, b" " * (MAX_PAYLOAD_BYTES + 1), f"features message is {MAX_PAYLOAD_BYTES + 1:,} bytes"),
        (STATUS, b" " * (MAX_STATUS_BYTES + 1), f"status message is {MAX_STATUS_BYTES + 1:,} bytes"),
        (STATUS, b"{", "status message is not JSON"),
        (FEATURES, b"[1]", "payload must be a JSON object, got list"),
    ]:
        with pytest.raises(Rejected) as refused:
            rule_event(topic, payload)
        assert words in str(refused.value), (words, str(refused.value))


def test_the_failure_lines_carry_the_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A kept message's line quotes the store's error (cut to 300 characters); a dead-lettered one's the whole
    error and its traceback, since it is a bug to fix."""
    import logging

    class Refusing:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
            raise self.exc

    caplog.set_level(logging.INFO, logger="simulator.stack.bridge")
    long_error = "redis write failed: " + "x" * 400
    drive(bridge_with(Refusing(MatchStoreUnavailable(long_error)), tmp_path / "a", retry_delays_s=()), [(FEATURES, 1)])
    drive(bridge_with(Refusing(KeyError("k" * 400)), tmp_path / "b", retry_delays_s=()), [(FEATURES, 2)])
    fields = {r.getMessage(): (vars(r).get("fields", {}), r) for r in caplog.records}
    kept, _ = fields["store_unavailable_kept"]
    assert kept["error"] == long_error[:300] and kept["topic"] == FEATURES
    dead, record = fields["message_dead_lettered"]
    assert dead["error"] == str(KeyError("k" * 400)) and record.exc_info and record.exc_info[0] is KeyError


def test_a_replay_stops_at_the_first_refusal_and_says_whether_it_drained(tmp_path: Path) -> None:
    store = Store(default="down")
    bridge = bridge_with(store, tmp_path)
    spool = bridge._spools[0]
    spool.append(FEATURES, b'{"seq": 1}')
    spool.append(FEATURES, b'{"seq": 2}')
    assert bridge._replay(spool) is False and len(spool) == 2 and store.calls == 1  # one try, no retries
    store.default = "ok"
    assert bridge._replay(spool) is True and len(spool) == 0 and store.stored == [1, 2]
    assert bridge.counts["replayed"] == 2


def test_a_dead_letter_file_is_made_with_its_folders(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "spool"
    write_dead_letter(folder, FEATURES, b"\xff raw", KeyError("k"))
    (entry,) = [json.loads(line) for line in (folder / DEAD_LETTER).read_text().splitlines()]
    assert base64.b64decode(entry["payload_b64"]) == b"\xff raw" and entry["topic"] == FEATURES


def test_the_refusal_lines_carry_the_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="simulator.stack.bridge")
    long_topic = "visualsearch/" + "x" * 300 + "/features"
    drive(bridge_with(Store(["down"]), tmp_path, retry_delays_s=(0.0,)), [(long_topic, 1), (FEATURES, 2)])
    fields = {r.getMessage(): vars(r).get("fields", {}) for r in caplog.records}
    assert fields["rule_rejected"]["topic"] == long_topic[:200]
    assert fields["rule_rejected"]["error"].startswith("topic 'visualsearch/xxx")
    assert fields["handler_retrying"]["error"] == "redis write failed: OOM command not allowed"


def test_a_refusal_to_start_names_every_stranded_spool_and_the_fix(tmp_path: Path) -> None:
    for name in ("worker-3", "worker-2"):
        Spool(tmp_path / name).append(FEATURES, b"{}")
    with pytest.raises(SpoolError) as refused:
        check_leftover_spools(tmp_path, 2)
    assert str(refused.value) == (
        f"spool folder {tmp_path} holds unreplayed messages of worker-2, worker-3 from a run with more"
        " workers: start with as many --workers so they are replayed"
    )


def test_an_idle_worker_waits_on_its_queue_instead_of_spinning(tmp_path: Path) -> None:
    import queue

    class Counted(queue.Queue):  # type: ignore[type-arg]
        gets = 0

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            Counted.gets += 1
            return super().get(block, timeout)

    bridge = bridge_with(Store(), tmp_path)
    bridge._queues[0] = Counted()
    worker = threading.Thread(target=bridge._work, args=(0,), daemon=True)
    worker.start()
    time.sleep(0.2)  # nothing arrives: with an empty spool the worker blocks until a message does
    bridge._queues[0].put(None)
    worker.join(10)
    assert not worker.is_alive() and Counted.gets == 1
