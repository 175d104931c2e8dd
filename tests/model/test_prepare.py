"""``prepare_frame``: the one crop-and-resize every frame and catalog image goes through.

The resize is a cheap stand-in for ``INTER_AREA`` (bilinear to twice the target, then an exact 2×2 box):
these tests hold it to what matters — right shape, no aliasing, close to the area average — and leave
speed to ``make bench``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.prepare import Roi, crop_square, prepare_frame, resize_square

SIZE = 224


def _photo_like(side: int, seed: int = 0) -> np.ndarray:
    """Smooth colour structure plus fine texture, like a camera frame of a product."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    texture = rng.normal(0, 12, (side, side, 3))
    return np.clip(coarse + texture, 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


@pytest.mark.parametrize("side", [100, 224, 300, 432, 448, 600, 720, 1080, 2000, 4000])
def test_any_crop_becomes_the_model_input(side: int) -> None:
    out = resize_square(_photo_like(side), SIZE)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("side", [300, 432, 600, 720, 1080, 2000])
def test_close_to_the_area_average_it_replaces(side: int) -> None:
    crop = _photo_like(side, seed=side)
    reference = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    assert _psnr(resize_square(crop, SIZE), reference) > 40.0


@pytest.mark.parametrize(("side", "period"), [(720, 4), (1080, 3), (1080, 4), (2000, 3), (2000, 4)])
def test_texture_finer_than_the_output_grid_is_averaged_like_inter_area(side: int, period: int) -> None:
    stripes = np.zeros((side, side, 3), dtype=np.uint8)
    for offset in range(period // 2):
        stripes[:, offset::period] = 255  # stripes above the output's Nyquist frequency: must not survive
    contrast = resize_square(stripes, SIZE).std()
    area = cv2.resize(stripes, (SIZE, SIZE), interpolation=cv2.INTER_AREA).std()
    decimated = cv2.resize(stripes, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).std()  # no anti-aliasing
    assert contrast <= area + 10
    assert contrast < decimated / 2


def test_a_flat_frame_stays_exactly_flat() -> None:
    flat = np.full((720, 1280, 3), (10, 120, 240), dtype=np.uint8)
    out = prepare_frame(flat, SIZE)
    assert (out == np.array([10, 120, 240], dtype=np.uint8)).all()


def test_roi_and_centre_square_choose_the_pixels_before_the_resize() -> None:
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    frame[:, 280:1000] = 200  # exactly the centre square
    assert (prepare_frame(frame, SIZE) == 200).all()
    frame[144:576, 424:856] = 50  # the centre 0.6 of that square
    assert (prepare_frame(frame, SIZE, Roi(0.2, 0.2, 0.6, 0.6)) == 50).all()
    assert crop_square(frame, Roi(0.2, 0.2, 0.6, 0.6)).shape == (432, 432, 3)


def test_gray_and_bgra_frames_are_accepted_and_wrong_dtype_is_refused() -> None:
    assert prepare_frame(np.zeros((480, 640), dtype=np.uint8), SIZE).shape == (SIZE, SIZE, 3)
    assert prepare_frame(np.zeros((480, 640, 4), dtype=np.uint8), SIZE).shape == (SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="uint8"):
        prepare_frame(np.zeros((480, 640, 3), dtype=np.float32), SIZE)
