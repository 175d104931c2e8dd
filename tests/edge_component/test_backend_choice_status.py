"""The device says which backend runs and why: in its status message over MQTT and in its start-up log."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from edge_component.loop import EdgeLoop
from edge_component.publishers import create_publisher
from edge_component.sources import create_source
from model.contracts.status import parse_status
from model.featurizer import Featurizer
from model.logs import JsonLinesFormatter
from simulator.stack.processes import MosquittoProcess
from tests.edge_component.conftest import Collector
from tests.edge_component.helpers import config


def _run_once(tmp_path: Path, model: Path, video: Path, mosquitto: MosquittoProcess, device_id: str) -> list[dict]:
    cfg = config(
        device_id,
        source={"kind": "video", "path": str(video), "realtime": False},
        publish={"kind": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}},
        model={"path": str(model), "backend": "auto", "threads": 1, "backend_cache": str(tmp_path / "choice.json")},
    )
    collector = Collector(mosquitto.host, mosquitto.port, f"visualsearch/{device_id}/status")
    featurizer = Featurizer(
        cfg.model.path, backend=cfg.model.backend, threads=cfg.model.threads, choice_cache=cfg.model.backend_cache
    )
    publisher = create_publisher(cfg)
    loop = EdgeLoop(cfg, create_source(cfg.source), featurizer, publisher)
    try:
        loop.run(threading.Event())  # a finite video: returns at its end, after the final status
        assert publisher.flush(10)
        assert collector.wait_for(lambda msgs: any(b"backend_choice" in p for _, p in msgs))
    finally:
        publisher.stop(flush_timeout=5)
    statuses = [parse_status(p) for p in collector.payloads("/status")]
    collector.close()
    return [s for s in statuses if "backend_choice" in s]


def test_status_and_log_carry_the_choice_and_its_reason(
    tiny_model: Path, video_file: Path, mosquitto: MosquittoProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("openvino")  # two runtimes present: auto has something to compare
    with caplog.at_level(logging.INFO):
        first = _run_once(tmp_path, tiny_model, video_file, mosquitto, "cam-choice")
    choice = first[-1]["backend_choice"]
    assert choice["how"] == "measured"
    assert set(choice["measured_ms"]) == {"onnxruntime/cpu", "openvino/CPU"}
    assert choice["backend"] == first[-1]["backend"]  # the status's backend is the one chosen
    assert choice["reason"].startswith("measured: ")
    started = [r for r in caplog.records if r.getMessage() == "edge_loop_started"]
    line = json.loads(JsonLinesFormatter().format(started[0]))
    assert line["backend_choice"] == choice["reason"]

    again = _run_once(tmp_path, tiny_model, video_file, mosquitto, "cam-choice")[-1]["backend_choice"]
    assert again["how"] == "cached"
    assert again["reason"] == f"cached from {choice['measured_at']}: " + choice["reason"].removeprefix("measured: ")


def test_an_explicit_backend_is_reported_as_such(tiny_model: Path) -> None:
    cfg = config("cam-explicit", model={"path": str(tiny_model), "backend": "onnxruntime"})
    featurizer = Featurizer(cfg.model.path, backend=cfg.model.backend, threads=1)
    status = EdgeLoop(cfg, create_source(cfg.source), featurizer, create_publisher(cfg)).status()
    assert status["backend_choice"]["how"] == "explicit"
    assert status["backend_choice"]["reason"] == "explicit backend setting"
