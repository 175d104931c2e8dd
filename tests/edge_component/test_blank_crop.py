"""A device whose model asks for it featurizes the whole frame when the model's centre crop is blank (the object is
held beside the middle of the frame), wherever the frame is prepared; frames with something in the crop keep the
crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_component.sources import FrameSource
from edge_component.sources.memory import MemoryReader
from model.contracts.wire import decode
from model.featurizer import Featurizer
from model.retrieval.query_regions import QueryRegions
from model.retrieval.settings import device_roi
from tests.edge_component.helpers import Running, config
from tests.model.test_frame_crop import _object_beside_the_middle, _texture, _wall
from tests.model.test_retrieval import _with_regions

REGIONS = QueryRegions(kind="centre", scales=(0.6,), combine="first", blank_below=0.15)


def _held_in_the_middle() -> np.ndarray:
    frame = _wall(seed=3)
    frame[140:340, 220:420] = _texture(200, 200, seed=4)
    return frame


@pytest.mark.parametrize("prepare", ["grabber", "loop"])
def test_the_whole_frame_is_sent_when_the_crop_is_blank(tmp_path: Path, prepare: str) -> None:
    model = _with_regions(tmp_path, REGIONS, "fallback")
    frames = [_object_beside_the_middle(), _held_in_the_middle()]
    out = tmp_path / "out.jsonl"
    cfg = config(
        "cam-blank",
        source={"kind": "video", "path": "unused.avi", "realtime": False, "prepare": prepare},
        live={"max_rate_hz": 0, "change_threshold": None},
        publish={"kind": "file", "file_path": str(out)},
    )
    run = Running(cfg, model, source=FrameSource(MemoryReader(frames)))
    run.join()
    run.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    got = [decode(line["payload"]).vector for line in lines if line["topic"].endswith("/features")]
    assert run.loop.errors == 0 and len(got) == 2

    reference = Featurizer(model, backend="onnxruntime", threads=1)
    crop = device_roi(REGIONS)
    whole, cropped = reference.featurize_frame(frames[0], None), reference.featurize_frame(frames[0], crop)
    assert float(np.dot(whole, cropped)) < 0.99  # the two differ, so the check below can tell them apart
    assert float(np.dot(got[0], whole)) > 0.999  # float16 on the wire
    assert float(np.dot(got[1], reference.featurize_frame(frames[1], crop))) > 0.999
