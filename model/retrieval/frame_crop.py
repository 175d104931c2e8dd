"""The device's crop of each frame: the model's centre crop, or the whole frame when that crop shows nothing.

The default model featurizes the centre 0.6 of the frame, because people hold a product in front of the camera.
A product held beside the middle, in front of a plain wall, or a camera framing the bare middle of a scene leaves
that crop empty, and its vector describes a wall. So, before the one inference, the device looks at the crop: when
under ``blank_below`` of its pixels lie on an edge (:func:`edge_fraction`), it featurizes the whole frame (the
frame's centre square, as a catalog photo is featurized) instead. One inference either way; the look costs a
64-px thumbnail and a Sobel filter (``python -m bench retrieval`` prints its time).

The threshold is the model's (``QueryRegions.blank_below``, recorded in the sidecar), so every device, the photo
search, ``catalog adapt`` and the evaluation make the same choice for the same frame. It was chosen on the tuning
part of the held-up evaluation (docs/match-quality.md, "The whole frame when the crop is blank").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.prepare import Roi, check_frame, crop_square, prepare_frame, resize_square

THUMB = 64
"""Side of the gray thumbnail the crop is judged on: the measure means the same at any camera resolution."""
EDGE = 40.0
"""Sobel magnitude (3×3, on 0–255 gray) above which a thumbnail pixel lies on an edge: a step of about 10 gray
levels. Sensor noise and JPEG blocks on a plain wall stay well under it."""


def edge_fraction(image: np.ndarray) -> float:
    """Fraction of ``image``'s pixels (BGR uint8, square, any size) on an edge, judged on a ``THUMB``-px gray
    thumbnail."""
    # resize_square: anti-aliased like INTER_AREA (decisions agree on the tuning frames) at a fifth of its cost.
    gray = cv2.cvtColor(resize_square(image, THUMB), cv2.COLOR_BGR2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    # The outer ring sees the reflected border, not the image.
    return float((magnitude[1:-1, 1:-1] > EDGE).mean())


@dataclass(frozen=True)
class FrameCrop:
    """Which part of each frame the device featurizes."""

    roi: Roi | None = None
    """The crop (the model's centre crop inside the user's ROI); None: the whole frame."""
    whole: Roi | None = None
    """What "the whole frame" is when the crop is blank: the user's ROI, or None for the whole frame."""
    blank_below: float | None = None
    """Featurize ``whole`` instead of ``roi`` when under this fraction of the crop's pixels lie on an edge."""

    def is_blank(self, frame: np.ndarray) -> bool:
        """True when the crop of ``frame`` shows nothing, so :meth:`roi_for` gives the whole frame."""
        if self.blank_below is None or self.roi == self.whole:
            return False
        # Gray and BGRA frames are converted, anything else refused, as prepare_frame does: same errors either way.
        return edge_fraction(crop_square(check_frame(frame), self.roi)) < self.blank_below

    def roi_for(self, frame: np.ndarray) -> Roi | None:
        return self.whole if self.is_blank(frame) else self.roi

    def prepare(self, frame: np.ndarray, size: int) -> np.ndarray:
        """``frame`` → the model's ``[size, size, 3]`` input, as the device prepares it."""
        frame = check_frame(frame)  # a gray or BGRA camera frame is converted once, not for the look and again
        return prepare_frame(frame, size, self.roi_for(frame))


def as_crop(value: FrameCrop | Roi | None) -> FrameCrop:
    """A :class:`FrameCrop` from a crop, or from a fixed ROI (None: the whole frame) that never falls back."""
    return value if isinstance(value, FrameCrop) else FrameCrop(roi=value, whole=value)
