"""Training augmentation that imitates a hand-held camera pointed at a product (numpy + OpenCV).

At query time the featurizer sees a phone or webcam frame: the item off-centre or small in the frame,
tilted, blurred by focus or hand shake, under another white balance, with sensor noise and JPEG artefacts.
The shared :func:`model.data.views.camera_view` (framing, rotation, flip, defocus, exposure, colour cast,
JPEG — the views export calibration and evaluation use) is the core; training adds what a moving hand adds
on top: a zoomed-out framing, perspective tilt, motion blur and sensor noise. The result goes through the
device's own :func:`model.prepare.prepare_frame`, so train and query images are resized identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.data.views import camera_view
from model.prepare import crop_square, prepare_frame


@dataclass(frozen=True)
class CameraAugment:
    """Probabilities and strengths of each distortion; defaults are a phone held at arm's length indoors."""

    strength: tuple[float, float] = (0.3, 1.2)
    """Range of ``camera_view`` strength drawn per image (0 = unchanged, 1 = a typical hand-held shot)."""
    zoom_out: float = 0.25
    """Probability of framing the item smaller than the frame (edge replicated, like a plain backdrop)."""
    max_tilt: float = 0.08
    """Perspective: each corner moves up to this share of the side."""
    tilt: float = 0.5
    motion_blur: float = 0.3
    noise: float = 0.3
    noise_sigma: float = 8.0

    def __call__(self, image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """BGR uint8 image of any size → augmented ``[size, size, 3]`` BGR uint8."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        square = np.ascontiguousarray(crop_square(image))
        if rng.random() < self.zoom_out:
            square = self._zoom_out(square, rng)
        if rng.random() < self.tilt:
            square = self._tilt(square, rng)
        view = camera_view(square, rng, float(rng.uniform(*self.strength)))
        out = prepare_frame(view, size)
        if rng.random() < self.motion_blur:
            out = self._motion_blur(out, rng)
        if rng.random() < self.noise:
            sigma = rng.uniform(1.0, self.noise_sigma)
            out = np.clip(out.astype(np.float32) + rng.normal(0.0, sigma, out.shape), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)

    def _zoom_out(self, square: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        side = square.shape[0]
        inner = max(1, int(side * rng.uniform(0.6, 0.95)))
        small = cv2.resize(square, (inner, inner), interpolation=cv2.INTER_AREA)
        top, left = (int(rng.integers(0, side - inner + 1)) for _ in range(2))
        return cv2.copyMakeBorder(small, top, side - inner - top, left, side - inner - left, cv2.BORDER_REPLICATE)

    def _tilt(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        if min(h, w) < 8:
            return image
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        jitter = rng.uniform(-self.max_tilt, self.max_tilt, (4, 2)) * np.array([w, h], dtype=np.float32)
        matrix = cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))
        return cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def _motion_blur(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length = int(rng.integers(3, max(4, image.shape[0] // 24) + 1))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
        rotated = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), dtype=np.float32)
        rotated /= max(float(rotated.sum()), 1e-6)
        return cv2.filter2D(image, -1, rotated, borderType=cv2.BORDER_REFLECT_101)


def evaluation_view(image: np.ndarray, size: int) -> np.ndarray:
    """What validation and the exported model see: the shared frame preparation, nothing else."""
    return prepare_frame(image, size)
