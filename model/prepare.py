"""The one way a frame or a catalog image reaches the model (docs/architecture.md: frame preparation).

Centre crop to a square (or a caller-given ROI), anti-aliased downscale to the model's input size,
BGR uint8 kept. Device frames and catalog images both come through :func:`prepare_frame`, so query and
catalog vectors can never be made from different preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Roi:
    """A region of interest as fractions of the frame (x, y of the top-left corner, width, height)."""

    x: float = 0.0
    y: float = 0.0
    w: float = 1.0
    h: float = 1.0

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ROI {name}={value} must be within [0, 1]")
        if self.w <= 0 or self.h <= 0:
            raise ValueError("ROI width and height must be > 0")
        if self.x + self.w > 1.0 + 1e-9 or self.y + self.h > 1.0 + 1e-9:
            raise ValueError("ROI must lie inside the frame (x + w <= 1 and y + h <= 1)")


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A camera frame as BGR uint8 ``H×W×3`` (gray and BGRA converted); anything else is refused naming why."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 BGR, got dtype {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frame must be HxWx3 BGR (or HxW gray, HxWx4 BGRA), got shape {frame.shape}")
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {frame.shape}")
    return frame


def crop_square(frame: np.ndarray, roi: Roi | None = None) -> np.ndarray:
    """The ROI (default: whole frame), then its largest centred square. Returns a view, no copy."""
    height, width = frame.shape[:2]
    if roi is not None:
        x0, y0 = round(roi.x * width), round(roi.y * height)
        x1, y1 = max(x0 + 1, round((roi.x + roi.w) * width)), max(y0 + 1, round((roi.y + roi.h) * height))
        frame = frame[y0:y1, x0:x1]
        height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return frame[top : top + side, left : left + side]


def resize_square(square: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased resize of a square crop to ``size``, at a fraction of ``INTER_AREA``'s cost.

    OpenCV's ``INTER_AREA`` is fast only for integer factors: from a 720 px crop to 224 (×3.21) it cost
    ≈ 2.0 ms, two thirds of the best int8 inference (make bench), while an exact 2×2 box takes ≈ 0.03 ms. So:
    halve with that exact box while the crop is at least 3.5× the target (huge catalog photos), rescale
    bilinearly to exactly twice the target (a factor of 0.5–1.75, too mild to alias much), then one exact 2×2
    box down to ``size``. The final box is the anti-aliasing step; against plain ``INTER_AREA`` the result is
    ≈ 49 dB PSNR from 720 px and ≈ 56 dB from 432 px, and retrieval quality is unchanged (docs/edge.md,
    "Frame preparation"; measured by ``make bench`` and ``visual-search model eval``). Texture of 3+ px period
    is averaged about as ``INTER_AREA`` averages it; 1–2 px patterns (rare after a camera's lens and
    demosaicing) keep more contrast than under ``INTER_AREA`` from 600–900 px crops. Crops smaller than the
    target are upscaled bilinearly (nothing to alias).
    """
    side = square.shape[0]
    if side == size:
        return np.ascontiguousarray(square)
    if side < size:
        return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
    while 2 * side >= 7 * size:
        side //= 2
        square = cv2.resize(square[: side * 2, : side * 2], (side, side), interpolation=cv2.INTER_AREA)
    if side != 2 * size:
        square = cv2.resize(square, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def prepare_frame(frame: np.ndarray, size: int, roi: Roi | None = None) -> np.ndarray:
    """Frame (any size, BGR uint8) → ``[size, size, 3]`` BGR uint8, ready for the model's ``image`` input."""
    frame = check_frame(frame)
    return resize_square(crop_square(frame, roi), size)


def prepare_batch(frames: list[np.ndarray], size: int, roi: Roi | None = None) -> np.ndarray:
    """Several frames → ``[N, size, size, 3]``; the same function per frame."""
    if not frames:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([prepare_frame(f, size, roi) for f in frames])
