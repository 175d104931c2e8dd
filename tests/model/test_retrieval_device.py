"""The device applies the model's recorded query region (held-up objects) inside the configured ROI."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_component.config import RoiConfig
from edge_component.loop import _frame_crop
from model.featurizer import Featurizer
from model.prepare import Roi
from model.retrieval.query_regions import QueryRegions
from model.retrieval.settings import effective_roi
from tests.model.test_retrieval import _with_regions


def test_effective_roi_composes_the_model_crop_inside_the_user_roi() -> None:
    assert effective_roi(None, None) is None
    user = Roi(0.5, 0.0, 0.5, 1.0)
    assert effective_roi(None, user) == user


def test_edge_loop_uses_the_sidecar_crop(tmp_path: Path) -> None:
    centre = QueryRegions(kind="centre", scales=(0.7,), combine="first")
    fz = Featurizer(_with_regions(tmp_path, centre, "device"), backend="onnxruntime", warmup=0)
    roi = _frame_crop(fz, None).roi
    assert roi is not None and (roi.x, roi.w) == pytest.approx((0.15, 0.7))
    inside = _frame_crop(fz, RoiConfig(x=0.5, y=0.0, w=0.5, h=1.0)).roi
    assert inside is not None
    assert (inside.x, inside.y, inside.w, inside.h) == pytest.approx((0.575, 0.15, 0.35, 0.7))
    plain = Featurizer(_with_regions(tmp_path, QueryRegions(), "plain"), backend="onnxruntime", warmup=0)
    assert _frame_crop(plain, None).roi is None
