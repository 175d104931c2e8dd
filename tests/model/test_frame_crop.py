"""The device's crop of a frame: the model's centre crop, or the whole frame when that crop shows nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.prepare import Roi, prepare_frame
from model.retrieval.frame_crop import FrameCrop, as_crop, edge_fraction
from model.retrieval.query_regions import QueryRegions
from model.retrieval.settings import DEFAULT_QUERY_REGIONS, device_roi, effective_crop
from model.sidecar import read_sidecar
from tests.model.test_retrieval import _with_regions

CENTRE = device_roi(QueryRegions(kind="centre", scales=(0.6,), combine="first"))


def _wall(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A plain wall as a camera sees it: one paint, sensor noise, JPEG."""
    rng = np.random.default_rng(seed)
    wall = np.clip(rng.normal(180.0, 2.5, (h, w, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", wall, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_COLOR))


def _texture(h: int, w: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


def _object_beside_the_middle() -> np.ndarray:
    frame = _wall()
    frame[150:330, 90:170] = _texture(180, 80)  # inside the centre square (x 80..560), left of the crop (x 176..464)
    return frame


def test_a_plain_wall_has_almost_no_edges_and_a_textured_object_has_many() -> None:
    assert edge_fraction(_wall()) < 0.02
    assert edge_fraction(_texture(200, 200)) > 0.3
    # the measure is of the picture, not its size
    assert edge_fraction(_texture(800, 800)) == pytest.approx(edge_fraction(_texture(200, 200)), abs=0.05)


def test_a_blank_crop_gives_the_whole_frame_and_a_filled_one_the_crop() -> None:
    crop = FrameCrop(roi=CENTRE, whole=None, blank_below=0.15)
    beside = _object_beside_the_middle()
    assert crop.is_blank(beside) and crop.roi_for(beside) is None
    assert np.array_equal(crop.prepare(beside, 64), prepare_frame(beside, 64, None))
    held = _wall()
    held[140:340, 220:420] = _texture(200, 200)
    assert not crop.is_blank(held) and crop.roi_for(held) == CENTRE
    assert np.array_equal(crop.prepare(held, 64), prepare_frame(held, 64, CENTRE))


def test_without_the_setting_or_with_a_fixed_roi_the_crop_never_falls_back() -> None:
    beside = _object_beside_the_middle()
    assert FrameCrop(roi=CENTRE, whole=None, blank_below=None).roi_for(beside) == CENTRE
    fixed = as_crop(CENTRE)
    assert fixed.roi_for(beside) == CENTRE and as_crop(None).roi_for(beside) is None
    assert as_crop(fixed) is fixed


def test_the_model_sets_the_rule_and_the_whole_frame_is_the_users_roi(tmp_path: Path) -> None:
    assert DEFAULT_QUERY_REGIONS.blank_below == 0.15
    regions = QueryRegions(kind="centre", scales=(0.6,), combine="first", blank_below=0.15)
    sidecar = read_sidecar(_with_regions(tmp_path, regions, "fallback"))
    crop = effective_crop(sidecar, None)
    assert (crop.roi, crop.whole, crop.blank_below) == (CENTRE, None, 0.15)
    user = Roi(0.5, 0.0, 0.5, 1.0)
    inside = effective_crop(sidecar, user)
    assert inside.whole == user and inside.roi is not None and inside.roi.x == pytest.approx(0.5 + 0.5 * 0.2)
    older = read_sidecar(_with_regions(tmp_path, regions.model_copy(update={"blank_below": None}), "older"))
    assert effective_crop(older, None).blank_below is None  # a model exported before the setting: as before
    assert "whole frame when under 0.15 edges" in regions.describe()
    # the rule is part of the model file: another rule is another model id
    assert sidecar.model_id != older.model_id
    assert effective_crop(None, user) == FrameCrop(roi=user, whole=user, blank_below=None)


def test_a_model_without_the_rule_records_what_it_recorded_before_the_rule_existed() -> None:
    # the stamp in the ONNX file is this dump: the same settings keep the same bytes, so the same model id
    plain = QueryRegions(kind="centre", scales=(0.6,), combine="first")
    assert "blank_below" not in plain.model_dump(mode="json") and "blank_below" not in plain.model_dump_json()
    ruled = plain.model_copy(update={"blank_below": 0.15})
    assert ruled.model_dump(mode="json")["blank_below"] == 0.15
    assert QueryRegions.model_validate(ruled.model_dump(mode="json")) == ruled
    assert QueryRegions.model_validate(plain.model_dump(mode="json")) == plain


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], DEFAULT_QUERY_REGIONS.blank_below), (["--blank-below", "0"], None), (["--blank-below", "0.2"], 0.2)],
)
def test_model_export_records_the_rule_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], expected: float | None
) -> None:
    import model.export.api as api
    from model.hub import main

    asked: dict[str, QueryRegions] = {}

    def ensure_exported(out: Path, variants: list[str], **kwargs: object) -> dict[str, Path]:
        asked["query_regions"] = kwargs["query_regions"]  # type: ignore[assignment]
        return {}

    monkeypatch.setattr(api, "ensure_exported", ensure_exported)
    assert main(["model", "export", "--out", str(tmp_path), *args]) == 0
    assert asked["query_regions"].blank_below == expected
    assert asked["query_regions"].scales == DEFAULT_QUERY_REGIONS.scales


def test_model_export_refuses_a_rule_that_is_not_a_fraction(capsys: pytest.CaptureFixture[str]) -> None:
    from model.hub import main

    with pytest.raises(SystemExit):
        main(["model", "export", "--blank-below", "2"])
    assert "--blank-below: 2 is not a fraction in [0, 1]" in capsys.readouterr().err


def test_gray_and_bgra_frames_are_judged_and_a_bad_frame_is_refused_as_prepare_frame_refuses_it() -> None:
    crop = FrameCrop(roi=CENTRE, whole=None, blank_below=0.15)
    beside = _object_beside_the_middle()
    gray = cv2.cvtColor(beside, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(beside, cv2.COLOR_BGR2BGRA)
    assert crop.is_blank(gray) and crop.is_blank(bgra)
    assert crop.prepare(gray, 64).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="uint8"):
        crop.prepare(beside.astype(np.float32), 64)


def _ramp(slope: int, axis: int) -> np.ndarray:
    """A 64-px square (the thumbnail's own size, so it is judged as it is): flat, then a ramp of ``slope`` gray
    levels per pixel over columns (axis 1) or rows (axis 0) 20..44, then flat again."""
    profile = np.clip((np.arange(64) - 20) * slope, 0, 24 * slope).astype(np.uint8)
    gray = np.tile(profile, (64, 1)) if axis == 1 else np.tile(profile[:, None], (1, 64))
    return np.repeat(gray[:, :, None], 3, axis=2)


@pytest.mark.parametrize("axis", [0, 1])
def test_an_edge_is_a_first_derivative_over_ten_gray_levels_and_the_border_ring_is_not_counted(axis: int) -> None:
    # Sobel of a ramp of slope s is 8 s: slope 6 gives 48 on the 23 inner ramp lines (the kinks give 24), in
    # either direction; the 62 lines inside the border ring are what the fraction is of.
    assert edge_fraction(_ramp(6, axis)) == pytest.approx(23 / 62)
    assert edge_fraction(_ramp(4, axis)) == 0.0  # 32: under the edge
    step = np.zeros((64, 64, 3), np.uint8)
    (step[:, 32:] if axis == 1 else step[32:])[...] = 10
    assert edge_fraction(step) == 0.0  # a step of exactly 10 levels is 40: not above it
    (step[:, 32:] if axis == 1 else step[32:])[...] = 11
    assert edge_fraction(step) == pytest.approx(2 / 62)  # the two lines beside the step


def test_the_crop_is_judged_against_the_threshold_itself_not_the_whole_frame() -> None:
    crop = FrameCrop(roi=Roi(0.25, 0.25, 0.5, 0.5), whole=None, blank_below=23 / 62)
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[32:96, 32:96] = _ramp(6, 1)  # the crop is exactly the 64-px ramp: 23/62 of it on an edge
    assert not crop.is_blank(frame)  # not under the threshold
    assert FrameCrop(roi=crop.roi, whole=None, blank_below=0.38).is_blank(frame)
    busy = cv2.resize(_texture(128, 128), (128, 128))
    busy[32:96, 32:96] = 128  # a plain crop inside a busy frame: blank, whatever the rest of the frame shows
    assert crop.is_blank(busy)


def test_a_fixed_roi_is_its_own_whole_frame() -> None:
    assert as_crop(CENTRE) == FrameCrop(roi=CENTRE, whole=CENTRE, blank_below=None)
