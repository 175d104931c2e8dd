"""Calibration and parity images: real photos under camera-like views, through the one ``prepare_frame``."""

from __future__ import annotations

import numpy as np

from model.data.photos import load_photos
from model.data.views import camera_view
from model.prepare import prepare_frame


def prepared_views(input_size: int, count: int, seed: int, strength: float = 1.0) -> np.ndarray:
    """``count`` prepared frames ``[count, S, S, 3]`` BGR uint8: each photo, then views of each in turn.

    The first pass over the photos is untouched (strength 0), so the set spans clean and camera-like frames.
    """
    photos = [image for _, image in load_photos()]
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        image = photos[i % len(photos)]
        view = image if i < len(photos) else camera_view(image, rng, strength)
        frames.append(prepare_frame(view, input_size))
    return np.stack(frames)
