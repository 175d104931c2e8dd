"""The real GreengrassCoreIPCClientV2 against the test nucleus (EventStream RPC over a Unix socket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_component.config import live_from_mapping
from edge_component.greengrass_config import GreengrassConfig
from edge_component.publishers.greengrass import GreengrassIpcPublisher
from edge_component.sources.base import FrameSource
from model.contracts.wire import decode
from tests.edge_component.conftest import synthetic_frames
from tests.edge_component.helpers import Running, config
from tests.edge_component.nucleus import TestNucleus
from tests.edge_component.scripted import ScriptedReader
from tests.wait import wait_for

COMPONENT = "com.example.EdgeVisualSearch"


@pytest.fixture
def nucleus(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestNucleus]:
    server = TestNucleus(COMPONENT, {"device_id": "cam-gg", "live": {"max_rate_hz": 0, "change_threshold": None}})
    server.start()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield server
    finally:
        server.stop()


def test_publish_to_iot_core_through_the_nucleus(nucleus: TestNucleus, tiny_model: Path) -> None:
    frames = synthetic_frames(6, seed=11)
    reader = ScriptedReader(frames)
    cfg = config("cam-gg", publish={"kind": "greengrass"})
    publisher = GreengrassIpcPublisher("cam-gg", capacity=10, timeout_s=5)
    run = Running(cfg, tiny_model, source=FrameSource(reader, stall_timeout_s=60), publisher=publisher)
    try:
        nucleus.fail_publishes = 1  # the first publish fails: it is retried, nothing lost or reordered
        reader.release(len(frames))
        wait_for(lambda: len([p for p in nucleus.published if p.topic.endswith("/features")]) >= len(frames))
    finally:
        run.stop()
    features = [p for p in nucleus.published if p.topic == "visualsearch/cam-gg/features"]
    messages = [decode(p.payload) for p in features]
    assert [m.seq for m in messages] == [run.loop.first_seq + i for i in range(1, len(frames) + 1)]
    assert all(p.qos == "1" for p in features)
    for message, frame in zip(messages, frames, strict=True):
        want = run.featurizer.featurize_frame(frame)
        assert float(message.vector @ want) > 0.9999
    assert publisher.failures == 1 and publisher.stats()["dropped"] == 0
    assert nucleus.rejected_connects == 0
    # the clean stop said goodbye on the status topic
    assert any(p.topic == "visualsearch/cam-gg/status" and b'"offline"' in p.payload for p in nucleus.published)


def test_wrong_auth_token_is_refused(nucleus: TestNucleus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVCUID", "not-the-token")
    publisher = GreengrassIpcPublisher("cam-gg", capacity=3, timeout_s=2, reconnect_min_s=0.1, reconnect_max_s=0.2)
    publisher.start()
    try:
        publisher.publish("visualsearch/cam-gg/features", b"{}", seq=1)
        wait_for(lambda: publisher.last_error is not None and nucleus.rejected_connects >= 1)
        assert "cannot connect" in publisher.last_error  # type: ignore[operator]
        assert nucleus.published == []
    finally:
        publisher.stop(flush_timeout=0.1)


def test_configuration_update_changes_the_rate_without_restart(nucleus: TestNucleus, tiny_model: Path) -> None:
    gg = GreengrassConfig()
    document = gg.read()
    assert document["device_id"] == "cam-gg"
    frames = synthetic_frames(12, seed=5)
    reader = ScriptedReader(frames)
    cfg = config("cam-gg", publish={"kind": "greengrass"}, live=document["live"])
    run = Running(
        cfg, tiny_model, source=FrameSource(reader, stall_timeout_s=60), publisher=GreengrassIpcPublisher("cam-gg")
    )
    gg.watch(lambda doc: run.loop.update_settings(live_from_mapping(doc, run.loop.settings)))
    try:
        assert nucleus.wait_subscribers(1)
        reader.release(4)
        wait_for(lambda: run.loop.processed == 4)
        assert run.loop.skipped["rate"] == 0  # unlimited rate: every frame sent
        loop_thread = run.thread

        nucleus.update_config({"live": {"max_rate_hz": 0.2}}, key_path=["live", "max_rate_hz"])
        wait_for(lambda: run.loop.settings.max_rate_hz == 0.2)
        # a bad value is rejected and the running settings stay
        nucleus.update_config({"live": {"max_rate_hz": -3}}, key_path=["live", "max_rate_hz"])
        wait_for(lambda: gg.updates_rejected == 1)
        assert "live.max_rate_hz" in (gg.last_error or "")
        assert run.loop.settings.max_rate_hz == 0.2

        reader.release(8)
        wait_for(lambda: run.loop.processed + run.loop.skipped["rate"] == 12)
        # at 0.2 Hz, eight frames released at once cannot all go: the new rate is in force
        assert run.loop.skipped["rate"] >= 6
        assert run.thread is loop_thread and loop_thread.is_alive()
    finally:
        gg.close()
        run.stop()
