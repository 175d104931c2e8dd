"""Sample data for ``make demo`` and the end-to-end test, built on the spot from photos that ship in packages.

- A small catalog: real photos (:mod:`model.data.photos`) as product images, with titles, written as
  ``catalog/images/<id>.jpg`` plus ``catalog/items.jsonl`` (id, title, image_url, source).
- A "camera" video (MJPG .avi, 640×480): segments in which some catalog objects are held up to the camera
  (hand-held motion, zoom, blur, lighting changes, sensor noise), segments of photos that are *not* in
  the catalog, and empty-scene gaps between them.
- ``truth.json``: frame index → the catalog id on screen, or null — what the end-to-end test scores.

Everything is seeded: the same version and seed give byte-identical images and the same frames.
``python -m simulator.sample_data --out .state/sample``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from model.data.photos import load_photos
from model.data.views import camera_view
from model.logs import log_event

log = logging.getLogger(__name__)

SAMPLE_VERSION = 2
SEED = 20261121
FRAME_W, FRAME_H = 640, 480
FPS = 10.0
SEGMENT_FRAMES = 24
GAP_FRAMES = 4

# photo name (model.data.photos) → catalog title. The apostrophes and the quoted word are deliberate: the
# web app must show them literally.
CATALOG_TITLES: dict[str, str] = {
    "skimage:astronaut": "Astronaut portrait print",
    "skimage:chelsea": "Chelsea the cat's portrait",
    "skimage:coffee": 'Cappuccino cup "Morning"',
    "skimage:rocket": "Rocket on the launch pad poster",
    "skimage:camera": "Cameraman photo (B&W)",
    "skimage:coins": "Antique coin set",
    "skimage:clock": "Wall clock",
    "skimage:moon": "Moon surface print",
    "sklearn:china": "Pagoda landscape postcard",
    "sklearn:flower": "Flower close-up print",
    "opencv:apple": "Red apple",
    "opencv:baboon": "Mandrill poster",
    "opencv:basketball1": "Basketball hoop scene",
    "opencv:board": "Circuit board",
    "opencv:building": "Building facade print",
    "opencv:butterfly": "Butterfly print",
    "opencv:chicky_512": "Chick toy",
    "opencv:fruits": "Fruit bowl",
    "opencv:graf1": "Graffiti wall art",
    "opencv:HappyFish": "Happy fish sticker",
    "opencv:home": "Living room set",
    "opencv:messi5": "Football match photo",
    "opencv:orange": "Orange",
    "opencv:smarties": "Smarties sweets",
    "opencv:squirrel_cls": "Squirrel figurine",
    "opencv:starry_night": "Starry Night canvas",
    "opencv:Blender_Suzanne1": "Suzanne monkey head",
    "opencv:rubberwhale1": "Rubber whale toy",
}
# Catalog objects held up to the camera in the video, in order.
SHOWN = (
    "skimage:chelsea",
    "skimage:coffee",
    "opencv:apple",
    "skimage:rocket",
    "opencv:butterfly",
    "opencv:fruits",
    "opencv:smarties",
    "opencv:starry_night",
    "opencv:Blender_Suzanne1",
    "skimage:clock",
)
# Real photos deliberately left out of the catalog: the video shows them as "not in the catalog".
DISTRACTORS = ("opencv:aero1", "opencv:leuvenA", "opencv:licenseplate_motion", "opencv:left")


@dataclass(frozen=True)
class SampleSize:
    """How much sample to build: the full demo, or a few seconds of it for tests and slow machines."""

    name: str
    catalog: tuple[str, ...] | None
    """Photo names of the catalog items (None: every photo of CATALOG_TITLES that is installed)."""
    shown: tuple[str, ...]
    distractors: tuple[str, ...]
    segment_frames: int
    gap_frames: int
    order: tuple[str, ...] | None = None
    """The segments in this order (None: catalog objects with a distractor after every few)."""


FULL = SampleSize("full", None, SHOWN, DISTRACTORS, SEGMENT_FRAMES, GAP_FRAMES)
SMALL = SampleSize(
    "small",
    ("skimage:chelsea", "skimage:coffee", "opencv:apple", "skimage:clock"),
    ("skimage:chelsea", "skimage:coffee"),
    ("opencv:aero1",),
    segment_frames=10,
    gap_frames=2,
    order=("skimage:chelsea", "opencv:aero1", "skimage:coffee"),  # ends on a catalog object
)
"""4 catalog items, 36 frames (3.6 s): the same pipeline in seconds (the README command test uses it)."""
SIZES = {size.name: size for size in (FULL, SMALL)}


def item_id(photo_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", photo_name.lower()).strip("-")


@dataclass(frozen=True)
class SampleData:
    root: Path
    catalog_dir: Path
    images_dir: Path
    items_file: Path
    video: Path
    truth_file: Path

    def truth(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.truth_file.read_text())
        return data


def paths(root: Path) -> SampleData:
    root = Path(root)
    catalog = root / "catalog"
    return SampleData(
        root=root,
        catalog_dir=catalog,
        images_dir=catalog / "images",
        items_file=catalog / "items.jsonl",
        video=root / "camera.avi",
        truth_file=root / "truth.json",
    )


# --- catalog ---------------------------------------------------------------------------------------------
def build_catalog(data: SampleData, photos: dict[str, np.ndarray], size: SampleSize = FULL) -> list[dict[str, Any]]:
    data.images_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for name, title in CATALOG_TITLES.items():
        if size.catalog is not None and name not in size.catalog:
            continue
        if name not in photos:
            log_event(log, "sample_photo_not_installed", logging.WARNING, photo=name)
            continue
        ident = item_id(name)
        image_name = f"{ident}.jpg"
        cv2.imwrite(str(data.images_dir / image_name), photos[name], [cv2.IMWRITE_JPEG_QUALITY, 92])
        items.append(
            {
                "id": ident,
                "title": title,
                "file": image_name,
                "image_url": f"/catalog/images/{image_name}",
                "source": name,
            }
        )
    with data.items_file.open("w") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return items


# --- video -----------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator) -> np.ndarray:
    """A plain room-like backdrop: a soft gradient with low-frequency texture, larger than the frame to pan."""
    h, w = FRAME_H + 120, FRAME_W + 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([150 + 30 * yy / h, 140 + 20 * xx / w, 130 - 10 * yy / h], axis=-1)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (h // 8, w // 8, 3)).astype(np.float32), (0, 0), 2)
    texture = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


class _Wobble:
    """Smooth hand-held motion: a sum of slow sines with random phases, plus a little per-frame jitter."""

    def __init__(self, rng: np.random.Generator, amplitude: float, jitter: float) -> None:
        self.freqs = rng.uniform(0.05, 0.35, 3)
        self.phases = rng.uniform(0, 2 * math.pi, 3)
        self.weights = rng.dirichlet(np.ones(3))
        self.amplitude, self.jitter, self.rng = amplitude, jitter, rng

    def __call__(self, t: float) -> float:
        smooth = float(np.sum(self.weights * np.sin(2 * math.pi * self.freqs * t + self.phases)))
        return self.amplitude * smooth + float(self.rng.normal(0, self.jitter))


def _motion_blur(frame: np.ndarray, dx: float, dy: float) -> np.ndarray:
    length = int(min(15, math.hypot(dx, dy)))
    if length < 3:
        return frame
    line = np.zeros((length, length), np.float32)
    angle = math.degrees(math.atan2(dy, dx))
    line[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    kernel = np.asarray(cv2.warpAffine(line, rot, (length, length)), dtype=np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.asarray(cv2.filter2D(frame, -1, kernel), dtype=np.uint8)


def _render_segment(
    photo: np.ndarray | None, background: np.ndarray, frames: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``frames`` frames of ``photo`` held in front of the camera (or the empty scene when None)."""
    out: list[np.ndarray] = []
    if photo is not None:
        # One camera-like take of the object per segment: framing, colour cast, JPEG, at moderate strength.
        photo = camera_view(photo, rng, strength=0.5)
    move_x, move_y = _Wobble(rng, 40, 1.5), _Wobble(rng, 30, 1.5)
    tilt, zoom = _Wobble(rng, 8, 0.3), _Wobble(rng, 0.12, 0.005)
    light = _Wobble(rng, 0.22, 0.01)
    pan_x, pan_y = rng.uniform(0, 160), rng.uniform(0, 120)
    t0 = rng.uniform(0, 100)
    prev = (0.0, 0.0)
    for i in range(frames):
        t = t0 + i / FPS
        bx = int(np.clip(pan_x + move_x(t) * 0.5, 0, 159))
        by = int(np.clip(pan_y + move_y(t) * 0.5, 0, 119))
        frame = background[by : by + FRAME_H, bx : bx + FRAME_W].copy()
        dx, dy = move_x(t), move_y(t)
        if photo is not None:
            ph, pw = photo.shape[:2]
            # The object fills most of the centre square, as when someone holds it up to the camera.
            scale = 0.92 * FRAME_H / max(ph, 0.75 * pw) * (1.0 + zoom(t))
            matrix = cv2.getRotationMatrix2D((pw / 2, ph / 2), tilt(t), scale)
            matrix[0, 2] += FRAME_W / 2 - pw / 2 + dx
            matrix[1, 2] += FRAME_H / 2 - ph / 2 + dy
            warped = cv2.warpAffine(photo, matrix, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
            mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), matrix, (FRAME_W, FRAME_H))
            frame = np.where(mask[..., None] > 127, warped, frame)
        frame = _motion_blur(frame, (dx - prev[0]) * 1.5, (dy - prev[1]) * 1.5)
        prev = (dx, dy)
        if rng.uniform() < 0.15:  # the autofocus hunts now and then
            frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(1.0, 2.5))
        gain = 1.0 + light(t)
        noisy = frame.astype(np.float32) * gain + rng.normal(0, 3.0, frame.shape).astype(np.float32)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def _interleave(shown: list[str], distractors: list[str]) -> list[str]:
    """Catalog objects with a not-in-catalog photo after every few (empty gaps go between all)."""
    plan: list[str] = []
    every = max(1, len(shown) // max(1, len(distractors)))
    d_iter = iter(distractors)
    for index, name in enumerate(shown, start=1):
        plan.append(name)
        distractor = next(d_iter, None) if index % every == 0 else None
        if distractor is not None:
            plan.append(distractor)
    plan.extend(d_iter)
    return plan


def render_video(
    data: SampleData, photos: dict[str, np.ndarray], rng: np.random.Generator, size: SampleSize = FULL
) -> dict[str, Any]:
    background = _background(rng)
    shown = [n for n in size.shown if n in photos]
    distractors = [n for n in size.distractors if n in photos]
    plan = [name for name in size.order if name in photos] if size.order else _interleave(shown, distractors)
    writer = cv2.VideoWriter(str(data.video), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video to {data.video}")
    truth_frames: list[dict[str, Any]] = []
    try:
        for name in tqdm(plan, desc="rendering sample video", unit="segment", leave=False):
            for segment, count, kind in (
                (None, size.gap_frames, "empty"),
                (name, size.segment_frames, "catalog" if name in CATALOG_TITLES else "distractor"),
            ):
                for frame in _render_segment(photos[segment] if segment else None, background, count, rng):
                    writer.write(frame)
                    truth_frames.append(
                        {
                            "frame": len(truth_frames),
                            "item": item_id(segment) if kind == "catalog" and segment else None,
                            "kind": kind,
                            "photo": segment,
                        }
                    )
    finally:
        writer.release()
    return {
        "version": SAMPLE_VERSION,
        "seed": SEED,
        "size": size.name,
        "fps": FPS,
        "width": FRAME_W,
        "height": FRAME_H,
        "video": data.video.name,
        "shown": [item_id(n) for n in shown],
        "distractors": distractors,
        "frames": truth_frames,
    }


def _is_current(data: SampleData) -> bool:
    try:
        truth = data.truth()
    except (OSError, ValueError):
        return False
    return (
        truth.get("version") == SAMPLE_VERSION
        and truth.get("seed") == SEED
        and data.video.is_file()
        and data.items_file.is_file()
        and len(truth.get("frames", [])) > 0
    )


def ensure_sample_data(root: Path, force: bool = False, size: SampleSize = FULL) -> SampleData:
    """Build the sample catalog, video and truth under ``root`` unless a current copy is there (idempotent).

    A current copy of either size is kept (``make demo`` plays whichever is there); ``force`` rebuilds it at
    ``size``.
    """
    data = paths(root)
    if not force and _is_current(data):
        return data
    if data.root.exists():
        shutil.rmtree(data.catalog_dir, ignore_errors=True)
    data.root.mkdir(parents=True, exist_ok=True)
    wanted = set(CATALOG_TITLES) | set(size.distractors)
    photos = {name: image for name, image in load_photos() if name in wanted}
    items = build_catalog(data, photos, size)
    truth = render_video(data, photos, np.random.default_rng(SEED), size)
    truth["catalog_count"] = len(items)
    tmp = data.truth_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(truth, indent=1))
    tmp.replace(data.truth_file)  # written last: its presence means the set is complete
    log_event(log, "sample_data_ready", root=str(data.root), items=len(items), frames=len(truth["frames"]))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.sample_data", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".state/sample"))
    parser.add_argument("--force", action="store_true", help="rebuild even when a current copy exists")
    parser.add_argument(
        "--size", choices=list(SIZES), default="full", help="full: the demo's; small: 4 items, 3.6 s of video"
    )
    args = parser.parse_args(argv)
    data = ensure_sample_data(args.out, args.force, SIZES[args.size])
    truth = data.truth()
    print(f"catalog: {data.items_file} ({truth['catalog_count']} items)")
    print(f"video:   {data.video} ({len(truth['frames'])} frames at {truth['fps']:g} fps)")
    print(f"truth:   {data.truth_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
