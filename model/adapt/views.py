"""Training views of one catalog item, made from its own catalog image and the rest of the catalog.

Catalog adaptation has no labels beyond the catalog: every item is its own class and its training images are
synthesized here. The views imitate what a camera does to a held object, but deliberately *not* the way the
held-up evaluation (:mod:`model.eval.heldup.views`) builds its queries, so the adaptation cannot learn the
evaluation's generator instead of the objects:

=====================  =====================================  =========================================
what                   held-up evaluation                     training views (here)
=====================  =====================================  =========================================
part of the object     axis-aligned crop, 65–100 % per side   random quadrilateral crop, 40–100 % area
geometry               rotation ±20° + corner jitter ±12 %    random homography (corner jitter ±22 %),
                                                              optional horizontal shear, flip
background             real room / street photos              other catalog items (blurred, recoloured),
                                                              colour gradients, noise, stripes
occluder               skin-coloured hand over one edge       random polygons / bars in any colour
light                  gain, offset, colour cast              gamma, saturation, hue shift, vignette
blur                   Gaussian                               motion (line kernel) or box blur, noise
compression            JPEG 40–90                             downscale-upscale, then JPEG 30–95
framing                640×480 frame                          square canvas, object 40–100 % of it
=====================  =====================================  =========================================

Pure numpy/cv2; every random number comes from the caller's ``rng`` (one seed, one set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

CANVAS = 320
"""Side of a training view in pixels (the model's input is smaller; prepare_frame downscales it)."""


@dataclass(frozen=True)
class TrainViewParams:
    keep_area: tuple[float, float] = (0.4, 1.0)
    corner_jitter: float = 0.22
    object_frac: tuple[float, float] = (0.4, 1.0)
    occlude: float = 0.6
    occluder_area: tuple[float, float] = (0.04, 0.25)
    blur: float = 0.6
    compress: float = 0.8


def _part(image: np.ndarray, rng: np.random.Generator, keep: tuple[float, float]) -> np.ndarray:
    """A random sub-rectangle of the item with area fraction in ``keep`` (any aspect within 1:2..2:1)."""
    h, w = image.shape[:2]
    area = rng.uniform(*keep)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    ch = int(np.clip(np.sqrt(area / aspect) * h, 8, h))
    cw = int(np.clip(np.sqrt(area * aspect) * w, 8, w))
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return image[y0 : y0 + ch, x0 : x0 + cw]


def _texture(others: Sequence[np.ndarray], rng: np.random.Generator, side: int) -> np.ndarray:
    """A background: another catalog item (blurred and recoloured), a gradient, noise or stripes."""
    kind = int(rng.integers(4)) if others else int(rng.integers(1, 4))
    if kind == 0:
        other = others[int(rng.integers(len(others)))]
        bg = cv2.resize(_part(other, rng, (0.2, 1.0)), (side, side), interpolation=cv2.INTER_AREA)
        bg = cv2.blur(bg, (int(rng.integers(1, 12)),) * 2)
        return np.clip(bg.astype(np.float32) * rng.uniform(0.5, 1.3, 3), 0, 255).astype(np.uint8)
    if kind == 1:
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0.0, 1.0, side, dtype=np.float32)
        ramp = t[None, :, None] if rng.uniform() < 0.5 else t[:, None, None]
        return np.broadcast_to(a + (b - a) * ramp, (side, side, 3)).astype(np.uint8)
    if kind == 2:
        small = rng.uniform(0, 255, (int(rng.integers(2, 16)),) * 2 + (3,)).astype(np.float32)
        return cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    period = int(rng.integers(6, 60))
    stripes = ((np.arange(side) // period) % 2).astype(np.float32)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = a + (b - a) * stripes[None, :, None]
    img = np.broadcast_to(img, (side, side, 3)).astype(np.uint8)
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(0, 180), 1.5)
    return cv2.warpAffine(img, matrix, (side, side), borderMode=cv2.BORDER_REFLECT_101)


def _place(part: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, p: TrainViewParams) -> np.ndarray:
    """Warp ``part`` by a random homography onto a random spot of ``canvas`` (object 40–100 % of its side)."""
    side = canvas.shape[0]
    h, w = part.shape[:2]
    scale = rng.uniform(*p.object_frac) * side / max(h, w)
    ow, oh = max(8, round(w * scale)), max(8, round(h * scale))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    box = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], dtype=np.float32)
    box += rng.uniform(-p.corner_jitter, p.corner_jitter, (4, 2)).astype(np.float32) * np.array([ow, oh], np.float32)
    if rng.uniform() < 0.3:  # horizontal shear: a product seen from the side
        box[:, 0] += (box[:, 1] - oh / 2) * rng.uniform(-0.3, 0.3)
    lo, hi = box.min(axis=0), box.max(axis=0)
    offset = np.array([rng.uniform(-lo[0], max(-lo[0], side - hi[0])), rng.uniform(-lo[1], max(-lo[1], side - hi[1]))])
    dst = (box + offset.astype(np.float32)).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(part, matrix, (side, side), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, (side, side), flags=cv2.INTER_NEAREST)
    return np.where(alpha[:, :, None] > 0, warped, canvas)


def _occlude(view: np.ndarray, rng: np.random.Generator, p: TrainViewParams) -> np.ndarray:
    side = view.shape[0]
    area = rng.uniform(*p.occluder_area) * side * side
    if rng.uniform() < 0.5:  # a bar (a finger, a strap, a shelf edge)
        length = rng.uniform(0.3, 1.0) * side
        thick = max(3, int(area / length))
        x0, y0 = rng.uniform(0, side, 2)
        angle = rng.uniform(0, np.pi)
        end = (int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle)))
        cv2.line(view, (int(x0), int(y0)), end, rng.uniform(0, 255, 3).tolist(), thick)
        return view
    radius = np.sqrt(area / np.pi)
    centre = rng.uniform(0, side, 2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
    radii = radius * rng.uniform(0.6, 1.4, len(angles))
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(view, [points.astype(np.int32)], rng.uniform(0, 255, 3).tolist())
    return view


def _light(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(view, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    out = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32) / 255.0
    out = out ** rng.uniform(0.6, 1.6)
    if rng.uniform() < 0.4:
        side = out.shape[0]
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
        out *= (1.0 - rng.uniform(0.2, 0.6) * (xx**2 + yy**2) * 2)[:, :, None]
    return (out * 255).clip(0, 255).astype(np.uint8)


def _degrade(view: np.ndarray, rng: np.random.Generator, p: TrainViewParams) -> np.ndarray:
    side = view.shape[0]
    if rng.uniform() < p.blur:
        if rng.uniform() < 0.5:
            length = int(rng.integers(3, 15))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1.0 / length
            rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
            kernel = np.asarray(cv2.warpAffine(kernel, rot, (length, length)), dtype=np.float32)
            view = cv2.filter2D(view, -1, kernel / max(float(kernel.sum()), 1e-6))
        else:
            view = cv2.blur(view, (int(rng.integers(2, 6)),) * 2)
    if rng.uniform() < 0.5:
        noise = rng.normal(0, rng.uniform(2, 12), view.shape)
        view = np.clip(view.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.uniform() < p.compress:
        small = max(32, int(side * rng.uniform(0.25, 0.8)))
        view = cv2.resize(cv2.resize(view, (small, small), interpolation=cv2.INTER_AREA), (side, side))
        ok, buf = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        view = decoded if decoded is not None else view
    return view


def training_view(
    item: np.ndarray,
    others: Sequence[np.ndarray],
    rng: np.random.Generator,
    params: TrainViewParams | None = None,
    side: int = CANVAS,
) -> np.ndarray:
    """One ``side × side`` BGR uint8 training view of ``item`` over a background made from ``others``."""
    if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
        raise ValueError(f"training_view needs a BGR uint8 HxWx3 image, got {item.dtype} {item.shape}")
    p = params or TrainViewParams()
    part = _part(item, rng, p.keep_area)
    if rng.uniform() < 0.5:
        part = part[:, ::-1]
    view = _place(np.ascontiguousarray(part), _texture(others, rng, side), rng, p)
    if rng.uniform() < p.occlude:
        view = _occlude(np.ascontiguousarray(view), rng, p)
    return np.ascontiguousarray(_degrade(_light(view, rng), rng, p))
