"""Frame preparation in the grabber thread: same vectors as the loop's own preparation, bad frames reported
and skipped without stopping the loop, the frame age's parts, and the status naming precision and threads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_component.sources import FrameSource
from edge_component.sources.memory import MemoryReader
from model.contracts.wire import decode
from model.featurizer import Featurizer
from tests.edge_component.helpers import Running, config

STAGES = {"queued", "prepare", "featurize", "encode", "publish"}


class ListReader(MemoryReader):
    """Frames from memory, each handed over (not live): runs are exact."""


def _frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8) for _ in range(count)]


def _run(tiny_model: Path, tmp_path: Path, frames: list[np.ndarray], prepare: str) -> tuple[Running, list[dict]]:
    out = tmp_path / f"{prepare}.jsonl"
    cfg = config(
        "cam-prep",
        source={"kind": "video", "path": "unused.avi", "realtime": False, "prepare": prepare},
        live={"max_rate_hz": 0, "change_threshold": None, "roi": {"x": 0.1, "y": 0.0, "w": 0.8, "h": 0.9}},
        publish={"kind": "file", "file_path": str(out)},
    )
    run = Running(cfg, tiny_model, source=FrameSource(ListReader(frames)))
    run.join()
    run.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return run, [line["payload"] for line in lines if line["topic"].endswith("/features")]


@pytest.mark.parametrize("prepare", ["grabber", "loop"])
def test_vectors_match_featurize_frame_wherever_frames_are_prepared(
    tiny_model: Path, tmp_path: Path, prepare: str
) -> None:
    frames = _frames(6)
    run, payloads = _run(tiny_model, tmp_path, frames, prepare)
    reference = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    from model.prepare import Roi

    expected = [reference.featurize_frame(f, Roi(0.1, 0.0, 0.8, 0.9)) for f in frames]
    got = [decode(p).vector for p in payloads]
    assert len(got) == 6
    for vector, want in zip(got, expected, strict=True):
        assert float(np.dot(vector, want)) > 0.999  # float16 on the wire
    assert run.loop.errors == 0
    assert (run.source.prepare is not None) == (prepare == "grabber")
    assert len(run.loop.age_parts) == 6
    for parts, age in zip(run.loop.age_parts, run.loop.frame_age_ms, strict=True):
        assert set(parts) == STAGES
        assert all(v >= 0 for v in parts.values()) and parts["featurize"] > 0
        # the parts are measured inside the age, so together they never exceed it
        assert sum(parts.values()) <= age + 1e-6


def test_a_frame_the_grabber_cannot_prepare_is_reported_and_skipped(tiny_model: Path, tmp_path: Path) -> None:
    frames = _frames(4)
    frames[1] = np.zeros((120, 160, 3), dtype=np.float32)  # not uint8: prepare_frame refuses it
    run, payloads = _run(tiny_model, tmp_path, frames, "grabber")
    assert len(payloads) == 3
    assert run.loop.errors == 1
    assert run.loop.last_error is not None and "frame 1" in run.loop.last_error and "uint8" in run.loop.last_error
    assert run.source.captured == 4


def test_status_reports_precision_and_threads(tiny_model: Path, tmp_path: Path) -> None:
    run, _ = _run(tiny_model, tmp_path, _frames(2), "grabber")
    status = run.loop.status()
    assert status["threads"] == 1
    assert "precision" in status  # onnxruntime does not say; OpenVINO reports e.g. bf16
    assert status["precision"] == run.featurizer.backend_info.precision


class LiveListReader(ListReader):
    @property
    def live(self) -> bool:
        return True


def test_grabber_skips_preparing_a_frame_that_a_newer_one_will_supersede(tiny_model: Path) -> None:
    from edge_component.loop import EdgeLoop
    from edge_component.publishers import create_publisher

    cfg = config("cam-skip", source={"kind": "video", "path": "unused.avi"}, publish={"kind": "stdout"})
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    frame = _frames(1)[0]
    for reader, busy_for, prepared in (
        (LiveListReader([]), 10.0, False),  # the loop is busy far beyond the next frame's arrival
        (LiveListReader([]), 0.0, True),  # the loop is idle: it takes this frame next
        (ListReader([]), 10.0, True),  # not live: every frame is taken, so it is always worth preparing
    ):
        loop = EdgeLoop(cfg, FrameSource(reader), featurizer, create_publisher(cfg))
        loop._grab_interval = 0.01
        loop._busy_until = time.monotonic() + busy_for if busy_for else 0.0
        result = loop._prepare_in_grabber(frame)
        assert (result is not None) == prepared
        if result is not None:
            assert result.shape == (32, 32, 3)


def test_status_says_openvino_runs_in_its_own_precision(tiny_model: Path) -> None:
    pytest.importorskip("openvino")
    from edge_component.loop import EdgeLoop
    from edge_component.publishers import create_publisher

    cfg = config("cam-ov", source={"kind": "video", "path": "unused.avi"}, publish={"kind": "stdout"})
    featurizer = Featurizer(tiny_model, backend="openvino", device="CPU", threads=1)
    status = EdgeLoop(cfg, FrameSource(ListReader([])), featurizer, create_publisher(cfg)).status()
    assert status["backend"] == "openvino"
    # bf16 on CPUs with AVX-512 BF16/AMX, f32 elsewhere: whatever OpenVINO says, never left out
    assert status["precision"] in ("bf16", "f32", "f16")
