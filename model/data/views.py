"""Deterministic camera-like views of a photo: what a handheld camera does to an object.

Random crop (framing), small rotation (tilt), horizontal flip, blur (focus/motion), brightness, contrast and
colour cast (exposure, white balance), JPEG re-encoding (stream compression). The same ``rng`` state always
gives the same view, so calibration sets and evaluations are reproducible. Pure numpy/cv2.
"""

from __future__ import annotations

import cv2
import numpy as np


def camera_view(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One camera-like view of a BGR uint8 ``image``; ``strength`` 0 = unchanged, 1 = a typical handheld shot."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera_view needs a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
    s = float(np.clip(strength, 0.0, 2.0))
    # Draw every random number whatever the strength, so views of different strength stay aligned per seed.
    scale, cx, cy = rng.uniform(0.0, 1.0, 3)
    angle = rng.uniform(-1.0, 1.0)
    flip = rng.uniform() < 0.5
    blur_sigma = rng.uniform(0.0, 1.0)
    gain, bias = rng.uniform(-1.0, 1.0, 2)
    cast = rng.uniform(-1.0, 1.0, 3)
    quality = rng.uniform(0.0, 1.0)

    out = image
    h, w = out.shape[:2]
    # Framing: keep 100 % .. 60 % of each side at strength 1, anywhere in the frame.
    keep = 1.0 - 0.4 * min(s, 1.0) * scale
    ch, cw = max(8, int(h * keep)), max(8, int(w * keep))
    y0, x0 = int((h - ch) * cy), int((w - cw) * cx)
    out = out[y0 : y0 + ch, x0 : x0 + cw]
    if s > 0 and abs(angle) > 1e-3:
        # Reflected border: a black wedge would be an artefact no real camera produces.
        matrix = cv2.getRotationMatrix2D((cw / 2.0, ch / 2.0), 15.0 * s * angle, 1.0)
        out = cv2.warpAffine(out, matrix, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if flip and s > 0:
        out = out[:, ::-1]
    sigma = 2.0 * s * blur_sigma
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if s > 0:
        contrast = 1.0 + 0.3 * s * gain
        offset = 30.0 * s * bias
        colour = 1.0 + 0.12 * s * cast
        mean = out.reshape(-1, 3).mean(axis=0)
        adjusted = (out.astype(np.float32) - mean) * contrast + mean + offset
        out = np.clip(adjusted * colour.astype(np.float32), 0, 255).astype(np.uint8)
        jpeg_quality = int(95.5 - 65.0 * min(s, 1.0) * float(quality))
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = np.asarray(decoded)
    return np.ascontiguousarray(out)


def camera_views(image: np.ndarray, count: int, seed: int, strength: float = 1.0) -> list[np.ndarray]:
    """``count`` views of ``image`` from one seed."""
    rng = np.random.default_rng(seed)
    return [camera_view(image, rng, strength) for _ in range(count)]
