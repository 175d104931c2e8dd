"""Synthetic "held up" frames: what the camera sees when a person holds a catalog product up in a room.

A random part of the object (the hand and the frame edge cut the rest off), a perspective warp (the product
is tilted towards the camera), pasted over a background photo (the room), a skin-coloured hand-sized
occluder over one edge, then blur, lighting / white balance and JPEG. Every random number comes from the
caller's ``rng``, so one seed always gives the same set. Pure numpy/cv2.

Three placements, so no choice can be tuned to one assumption about where people hold things:

- ``centred``: the object's centre within about ±20 % of the frame centre, 55–85 % of the frame height.
- ``anywhere``: the object anywhere inside the 640×480 frame, 45–80 % of its height.
- ``aside``: the object held beside the middle of the frame (at most a third of its width inside the device's
  centre 0.6 crop), 35–55 % of the frame height, in front of a plain wall instead of a room photo: a frame whose
  middle shows nothing at all, which the other two placements never make.

Backgrounds are real photos that are *not* catalog items (opencv-doc's calibration shots: rooms with a
person holding a board; frames of opencv-doc's street video; scikit-image's garage stereo pair), so a query
never contains a second catalog item by construction. Which backgrounds a set may use is decided by the
split (:mod:`model.eval.heldup.split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np

from model.data.photos import OPENCV_DATA, read_opencv_photo, to_bgr

BACKGROUND_FILES = tuple(f"{side}{i:02d}.jpg" for side in ("left", "right") for i in range(1, 15) if i != 10)
"""opencv-doc stereo-calibration photos: real indoor rooms, none of them a catalog item."""
BACKGROUND_VIDEO = "vtest.avi"
"""opencv-doc's street video (people walking past shops): real scenes, none of them a catalog item."""
VIDEO_FRAMES = tuple(range(0, 795, 60))
Placement = Literal["centred", "anywhere", "aside"]
PLACEMENTS: tuple[Placement, ...] = ("centred", "anywhere", "aside")
ASIDE_INSIDE = 1.0 / 3.0
"""``aside``: the largest fraction of the object's width inside the middle 0.6 of the frame's centre square."""
WALL_BGR = ((225, 230, 235), (190, 205, 215), (170, 175, 180), (200, 215, 225), (150, 160, 170), (215, 225, 210))
"""Plain wall paints (BGR) for the ``aside`` background: white, beige, grey, cream, dark grey, pale green."""

SKIN_BGR = ((96, 133, 194), (70, 105, 170), (140, 175, 225), (45, 70, 120), (110, 150, 205))
"""Skin tones (BGR) for the hand occluder, light to dark."""


@dataclass(frozen=True)
class HeldUpParams:
    """How hard the views are. The defaults reproduce the issue's probe (default featurizer recall@1 ≈ 0.5)."""

    frame_w: int = 640
    frame_h: int = 480
    object_frac: tuple[float, float] = (0.55, 0.85)
    """Object's longer side as a fraction of the frame height."""
    part_keep: tuple[float, float] = (0.65, 1.0)
    """Fraction of each side of the catalog photo that is visible."""
    warp: float = 0.12
    """Perspective corner jitter as a fraction of the object size."""
    rotate_deg: float = 20.0
    occluder_frac: tuple[float, float] = (0.06, 0.18)
    """Hand area as a fraction of the object's bounding box."""
    blur_sigma: float = 1.6
    jpeg_quality: tuple[int, int] = (40, 90)
    placement: Placement = "centred"
    """centred: the object's centre within ±20 % (x) / ±15 % (y) of the frame height around the centre;
    anywhere: any position that keeps the object's box inside the frame; aside: left or right of the middle,
    see :data:`ASIDE_INSIDE`, on a plain wall."""


def placement_params(placement: Placement) -> HeldUpParams:
    """The generator's settings for one placement (``anywhere``: smaller objects, 45–80 % of the height)."""
    if placement == "centred":
        return HeldUpParams()
    if placement == "anywhere":
        return replace(HeldUpParams(), object_frac=(0.45, 0.80), placement="anywhere")
    if placement == "aside":
        return replace(HeldUpParams(), object_frac=(0.35, 0.55), placement="aside")
    raise ValueError(f"unknown placement {placement!r} (known: {', '.join(PLACEMENTS)})")


@dataclass
class HeldUpSet:
    """Catalog photos and held-up query frames of them; ``query_items[q]`` is the index of the query's item."""

    names: list[str]
    catalog: list[np.ndarray]
    queries: list[np.ndarray]
    query_items: np.ndarray
    seed: int
    params: HeldUpParams = field(default_factory=HeldUpParams)
    label: str = ""
    """What the queries are (placement, part, seeds), for table titles."""


def background_names() -> list[str]:
    """Every background photo's name, in a fixed order (the split picks from these)."""
    names = [name for name in BACKGROUND_FILES if (OPENCV_DATA / name).exists()]
    if (OPENCV_DATA / BACKGROUND_VIDEO).exists():
        names += [f"{BACKGROUND_VIDEO}#{i}" for i in VIDEO_FRAMES]
    names += ["skimage:stereo_motorcycle#0", "skimage:stereo_motorcycle#1"]
    return names


def _read_background(name: str) -> np.ndarray | None:
    if name.startswith(BACKGROUND_VIDEO + "#"):
        capture = cv2.VideoCapture(str(OPENCV_DATA / BACKGROUND_VIDEO))
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(name.split("#")[1]))
        ok, frame = capture.read()
        capture.release()
        return frame if ok else None
    if name.startswith("skimage:stereo_motorcycle#"):
        try:
            import skimage.data as skdata

            return to_bgr(skdata.stereo_motorcycle()[int(name.split("#")[1])])
        except Exception:  # scikit-image or its data missing: the other backgrounds still build the set
            return None
    return read_opencv_photo(name)


def load_backgrounds(names: list[str] | None = None) -> list[np.ndarray]:
    """The named background photos (BGR; default: the calibration rooms); a flat gray room when none is here."""
    wanted = list(BACKGROUND_FILES) if names is None else names
    found = [image for name in wanted if (image := _read_background(name)) is not None]
    return found or [np.full((480, 640, 3), 128, dtype=np.uint8)]


def _background(backgrounds: list[np.ndarray], rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    bh, bw = bg.shape[:2]
    scale = max(w / bw, h / bh) * rng.uniform(1.0, 1.6)
    resized = cv2.resize(bg, (max(w, round(bw * scale)), max(h, round(bh * scale))), interpolation=cv2.INTER_AREA)
    y0 = int(rng.integers(resized.shape[0] - h + 1))
    x0 = int(rng.integers(resized.shape[1] - w + 1))
    out = resized[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    # The calibration rooms are gray; a colour cast makes the background less trivially separable.
    out *= rng.uniform(0.8, 1.2, 3).astype(np.float32)
    if rng.uniform() < 0.5:
        out = out[:, ::-1]
    return np.clip(out, 0, 255).astype(np.uint8)


def _wall(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A plain painted wall: one paint, a soft light falloff across it, sensor noise."""
    paint = np.array(WALL_BGR[int(rng.integers(len(WALL_BGR)))], dtype=np.float32) * rng.uniform(0.75, 1.05)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * (xs - w / 2) + np.sin(angle) * (ys - h / 2)) / max(w, h)
    light = 1.0 + rng.uniform(0.05, 0.25) * ramp
    out = paint[None, None, :] * light[:, :, None] + rng.normal(0.0, 2.5, (h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def _hand_mask(h: int, w: int, box: tuple[int, int, int, int], rng: np.random.Generator, frac: float) -> np.ndarray:
    """A palm ellipse plus finger strips over one edge of ``box`` (x0, y0, x1, y1), about ``frac`` of its area."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    mask = np.zeros((h, w), dtype=np.uint8)
    area = frac * bw * bh
    side = int(rng.integers(4))
    ax = float(np.sqrt(area / np.pi * rng.uniform(0.6, 1.4)))
    ay = area / (np.pi * ax)
    if side in (0, 1):  # left / right edge: the palm sits on the edge, fingers reach inwards
        cx = x0 if side == 0 else x1
        cy = int(rng.uniform(y0 + 0.2 * bh, y1 - 0.2 * bh))
        axes = (max(3, round(ax * 0.8)), max(3, round(ay * 1.3)))
    else:  # bottom / top edge
        cx = int(rng.uniform(x0 + 0.2 * bw, x1 - 0.2 * bw))
        cy = y1 if side == 2 else y0
        axes = (max(3, round(ax * 1.3)), max(3, round(ay * 0.8)))
    cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(-20, 20)), 0, 360, 255, -1)
    finger_len = 1.2 * max(axes)
    finger_w = max(2, round(min(axes) * 0.35))
    for i in range(4):
        offset = (i - 1.5) * finger_w * 1.3
        if side in (0, 1):
            direction = 1 if side == 0 else -1
            start = (int(cx), int(cy + offset))
            end = (int(cx + direction * finger_len * rng.uniform(0.7, 1.0)), int(cy + offset))
        else:
            direction = -1 if side == 2 else 1
            start = (int(cx + offset), int(cy))
            end = (int(cx + offset), int(cy + direction * finger_len * rng.uniform(0.7, 1.0)))
        cv2.line(mask, start, end, 255, finger_w)
    return mask


def _object_centre(corners: np.ndarray, p: HeldUpParams, rng: np.random.Generator) -> tuple[float, float]:
    """Where the object's centre lands. Both draws are made for either placement, so seeds stay aligned."""
    near_x, near_y = rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15)
    any_x, any_y = rng.uniform(0.0, 1.0, 2)
    if p.placement == "centred":
        # People hold things roughly in front of the camera: the centre lands in the middle half of the frame.
        return p.frame_w / 2 + near_x * p.frame_h, p.frame_h / 2 + near_y * p.frame_h
    # Anywhere the object's box fits inside the frame (centred on an axis where it is larger than the frame).
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    x_range = (-lo[0], p.frame_w - hi[0])
    y_range = (-lo[1], p.frame_h - hi[1])
    if p.placement == "aside":
        x_range = _aside_range(x_range, lo[0], hi[0], p, left=near_x < 0)
        cy = y_range[0] + any_y * (y_range[1] - y_range[0]) if y_range[1] > y_range[0] else p.frame_h / 2
        return float(x_range[0] + any_x * (x_range[1] - x_range[0])), float(cy)
    cx = x_range[0] + any_x * (x_range[1] - x_range[0]) if x_range[1] > x_range[0] else p.frame_w / 2
    cy = y_range[0] + any_y * (y_range[1] - y_range[0]) if y_range[1] > y_range[0] else p.frame_h / 2
    return float(cx), float(cy)


def _aside_range(
    x_range: tuple[float, float], lo: float, hi: float, p: HeldUpParams, *, left: bool
) -> tuple[float, float]:
    """Object centres (x) on one side that keep at most :data:`ASIDE_INSIDE` of its width inside the middle 0.6 of
    the frame's centre square (and its box inside the frame, where both fit)."""
    width = hi - lo
    crop_left, crop_right = p.frame_w / 2 - 0.3 * p.frame_h, p.frame_w / 2 + 0.3 * p.frame_h
    if left:  # right edge (centre + hi) at most crop_left + inside × width; at the frame's edge when both can't hold
        return x_range[0], max(x_range[0], min(x_range[1], crop_left + ASIDE_INSIDE * width - hi))
    return min(x_range[1], max(x_range[0], crop_right - ASIDE_INSIDE * width - lo)), x_range[1]


def held_up_view(
    item: np.ndarray, backgrounds: list[np.ndarray], rng: np.random.Generator, params: HeldUpParams | None = None
) -> np.ndarray:
    """One held-up frame (``frame_h × frame_w`` BGR uint8) of the catalog photo ``item``."""
    if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
        raise ValueError(f"held_up_view needs a BGR uint8 HxWx3 image, got {item.dtype} {item.shape}")
    p = params or HeldUpParams()
    w, h = p.frame_w, p.frame_h
    frame = _wall(rng, w, h) if p.placement == "aside" else _background(backgrounds, rng, w, h)

    # A random part of the object.
    ih, iw = item.shape[:2]
    keep_h, keep_w = rng.uniform(*p.part_keep, 2)
    ch, cw = max(8, int(ih * keep_h)), max(8, int(iw * keep_w))
    y0, x0 = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
    part = item[y0 : y0 + ch, x0 : x0 + cw]

    # Its size in the frame, then a rotation + perspective warp into a random spot near the centre.
    longest = rng.uniform(*p.object_frac) * h
    scale = longest / max(ch, cw)
    ow, oh = max(8, round(cw * scale)), max(8, round(ch * scale))
    part = cv2.resize(part, (ow, oh), interpolation=cv2.INTER_AREA)
    src = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], dtype=np.float32)
    jitter = rng.uniform(-p.warp, p.warp, (4, 2)) * np.array([ow, oh], dtype=np.float32)
    angle = np.deg2rad(rng.uniform(-p.rotate_deg, p.rotate_deg))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    centred = (src - np.array([ow / 2, oh / 2], dtype=np.float32) + jitter) @ rot.T
    cx, cy = _object_centre(centred, p, rng)
    dst = (centred + np.array([cx, cy], dtype=np.float32)).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(part, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    alpha = cv2.warpPerspective(np.full((oh, ow), 255, np.uint8), matrix, (w, h), flags=cv2.INTER_LINEAR)
    frame = np.where(alpha[:, :, None] > 127, warped, frame)

    # A hand over one edge of the object.
    xs, ys = dst[:, 0], dst[:, 1]
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    hand = _hand_mask(h, w, box, rng, rng.uniform(*p.occluder_frac))
    skin = np.array(SKIN_BGR[int(rng.integers(len(SKIN_BGR)))], dtype=np.float32)
    shade = rng.uniform(0.8, 1.1)
    hand_img = np.clip(skin * shade + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    frame = np.where(hand[:, :, None] > 0, hand_img, frame)

    # Camera: focus/motion blur, exposure and white balance, stream compression.
    sigma = rng.uniform(0.0, p.blur_sigma)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    gain = rng.uniform(0.7, 1.3)
    offset = rng.uniform(-25, 25)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    frame = np.clip((frame.astype(np.float32) * gain + offset) * cast, 0, 255).astype(np.uint8)
    quality = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        if decoded is not None:
            frame = decoded
    return np.ascontiguousarray(frame)


def build_heldup_set(
    views_per_item: int = 5,
    seed: int = 0,
    limit: int | None = None,
    params: HeldUpParams | None = None,
    *,
    photos: list[tuple[str, np.ndarray]] | None = None,
    query_names: set[str] | None = None,
    backgrounds: list[np.ndarray] | None = None,
    label: str = "",
) -> HeldUpSet:
    """Catalog = ``photos`` (default: the package photos, 43 here); queries = ``views_per_item`` held-up frames
    of each photo in ``query_names`` (default: all), drawn from ``seed`` over ``backgrounds``."""
    from model.data.photos import load_photos

    photos = load_photos(limit) if photos is None else photos
    backgrounds = load_backgrounds() if backgrounds is None else backgrounds
    rng = np.random.default_rng(seed)
    queries: list[np.ndarray] = []
    items: list[int] = []
    for index, (name, photo) in enumerate(photos):
        if query_names is not None and name not in query_names:
            continue
        for _ in range(views_per_item):
            queries.append(held_up_view(photo, backgrounds, rng, params))
            items.append(index)
    return HeldUpSet(
        names=[name for name, _ in photos],
        catalog=[photo for _, photo in photos],
        queries=queries,
        query_items=np.array(items, dtype=np.int64),
        seed=seed,
        params=params or HeldUpParams(),
        label=label,
    )
