"""Faults on real parts: the broker killed and restarted mid-run, a camera that dies and comes back."""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from edge_component.sources.base import FrameSource
from model.contracts.status import parse_status
from model.contracts.wire import decode
from simulator.stack.processes import MosquittoProcess
from tests.edge_component.conftest import Collector, synthetic_frames, write_video
from tests.edge_component.helpers import Running, config
from tests.edge_component.scripted import ScriptedReader
from tests.wait import wait_for


def test_broker_killed_and_restarted_queue_drains_in_order(tmp_path: Path, tiny_model: Path) -> None:
    # Persistence with a save on every change lets the test's subscriber session survive SIGKILL, so the
    # subscriber does not race the device to reconnect: every message the broker accepts reaches it.
    extra = "\n".join(
        [
            "persistence true",
            f"persistence_location {tmp_path / 'mosquitto'}/",
            "autosave_on_changes true",
            "autosave_interval 1",
            *([f"user {getpass.getuser()}"] if os.geteuid() == 0 else []),
        ]
    )
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto", extra_config=extra).start()
    capacity, before, during = 5, 4, 17
    frames = synthetic_frames(before + during, seed=7)
    collector = Collector(
        broker.host, broker.port, "visualsearch/cam-q/features", client_id="collector", clean_session=False
    )
    cfg = config(
        "cam-q",
        publish={
            "kind": "mqtt",
            "queue_capacity": capacity,
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.5, "reconnect_max_s": 1},
        },
    )
    reader = ScriptedReader(frames)
    run = Running(cfg, tiny_model, source=FrameSource(reader, stall_timeout_s=60))
    try:
        reader.release(before)
        assert collector.wait_for(lambda m: len({decode(p).seq for _, p in m}) >= before), "first messages missing"
        # Every one acknowledged before the kill: none is left in flight to be requeued and counted against the
        # queue during the outage (on a loaded machine a PUBACK can lag the delivery).
        assert run.publisher.flush(10)
        broker.kill()
        wait_for(lambda: not run.publisher.connected, what="the publisher to notice the outage")
        reader.release(during)
        wait_for(lambda: run.loop.processed == before + during, what="all frames to be featurized")
        assert run.publisher.stats()["dropped"] == during - capacity
        broker.start()
        expected_distinct = before + capacity
        assert collector.wait_for(lambda m: len({decode(p).seq for _, p in m}) >= expected_distinct, timeout=30), (
            collector.messages
        )
        assert run.publisher.flush(10)
        collector.drain(run.publisher, "visualsearch/cam-q/features")  # nothing sent before can arrive after this
    finally:
        run.stop()
        collector.close()
        broker.stop()
    seqs = [decode(p).seq for p in collector.payloads()]
    first = run.loop.first_seq
    produced = before + during
    dropped = run.publisher.stats()["dropped"]
    assert dropped == during - capacity
    # The promise is at-least-once, in order of first arrival: QoS 1 may deliver a message twice (a PUBACK lost
    # with the broker, paho re-sending its window), so duplicates are allowed and counts are not exact.
    first_arrivals = list(dict.fromkeys(seqs))
    expected = [first + i for i in range(1, before + 1)] + [
        first + i for i in range(produced - capacity + 1, produced + 1)
    ]
    # the frames before the outage, then the newest `capacity` of those during it; nothing else, nothing lost
    assert first_arrivals == expected, seqs
    assert len(first_arrivals) + dropped == produced


def test_camera_dies_and_comes_back(tmp_path: Path, tiny_model: Path, mosquitto: MosquittoProcess) -> None:
    """An IP camera (stream source) drops; reopening fails while it is gone, then the loop recovers."""
    video = write_video(tmp_path / "cam.avi", synthetic_frames(30, seed=3), fps=30)
    stream_path = tmp_path / "live.avi"
    shutil.copy(video, stream_path)
    collector = Collector(mosquitto.host, mosquitto.port, "visualsearch/cam-s/#")
    cfg = config(
        "cam-s",
        source={"kind": "stream", "url": str(stream_path), "reconnect_min_s": 0.2, "reconnect_max_s": 0.4},
        publish={"kind": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}},
        health={"status_interval_s": 60},
    )
    run = Running(cfg, tiny_model)
    try:
        wait_for(lambda: run.loop.processed >= 3, what="first frames")
        stream_path.unlink()  # the camera goes away: the reader hits the end, reopening fails
        wait_for(lambda: run.source.state == "reconnecting" and run.source.reconnects >= 2, what="reconnecting")
        processed_during_outage = run.loop.processed
        # two more failed reopen attempts, and not one frame in between
        failed = run.source.reconnects
        wait_for(lambda: run.source.reconnects >= failed + 2, what="two more reopen attempts")
        assert run.loop.processed == processed_during_outage
        assert run.loop.state() == "degraded"
        shutil.copy(video, stream_path)  # back
        # A file played as a stream ends quickly and is reopened; a real camera would stay "ok".
        wait_for(lambda: run.loop.processed >= processed_during_outage + 3, what="frames after recovery")
        assert collector.wait_for(lambda m: sum(b'"state":"online"' in p for t, p in m if t.endswith("/status")) >= 2)
    finally:
        run.stop()
        collector.close()
    statuses = [parse_status(p) for p in collector.payloads("/status")]
    # the outage was reported on the status topic, with the reason, and then the recovery
    outage = next(
        i for i, s in enumerate(statuses) if s["state"] == "degraded" and "source stream:" in (s["last_error"] or "")
    )
    assert statuses[outage]["source"]["state"] == "reconnecting"
    assert any(s["state"] == "online" for s in statuses[outage + 1 :])


def test_watchdog_reports_a_stalled_source() -> None:
    reader = ScriptedReader(synthetic_frames(3), live=True)
    source = FrameSource(reader, stall_timeout_s=0.3, reconnect_min_s=0.05, reconnect_max_s=0.1).start()
    try:
        reader.release(1)
        assert source.get(timeout=5) is not None
        wait_for(lambda: source.state == "reconnecting", timeout=5, what="stall detection")
        assert "stalled" in (source.last_error or "")
        reader.release(1)  # the stuck read returns; the grabber reopens and carries on
        wait_for(lambda: reader.opened >= 2 and source.state == "ok", timeout=5, what="reopen")
        reader.release(1)
        assert source.get(timeout=5) is not None
    finally:
        source.stop()


def test_stop_delivers_what_was_queued_before_the_first_connect(tmp_path: Path) -> None:
    from edge_component.publishers import create_publisher
    from simulator.stack.processes import free_port

    # A short run (a folder of 4 images) can end before the broker connection is up: stopping must still
    # drain the queue, not discard it because "not connected yet".
    port = free_port()
    cfg = config("cam-early", publish={"kind": "mqtt", "mqtt": {"port": port, "reconnect_min_s": 1.0}})
    publisher = create_publisher(cfg).start()
    for seq in range(3):
        publisher.publish("visualsearch/cam-early/features", b"{}", seq=seq)
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto", port=port).start()
    try:
        assert not publisher.connected  # the publisher is still waiting to retry its first connect
        publisher.stop(flush_timeout=10.0)
        stats = publisher.stats()
        assert stats["sent"] == 3 and stats["queue_depth"] == 0 and stats["dropped"] == 0
    finally:
        broker.stop()
