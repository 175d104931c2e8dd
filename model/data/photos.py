"""Real photos that ship in installed packages, as ``(name, BGR uint8 array)``.

Sources: scikit-image's bundled data, scikit-learn's ``load_sample_images()`` and Debian ``opencv-doc``
(``/usr/share/doc/opencv-doc/examples/data``). Only real photographs are listed — synthetic charts,
chessboards, logos and text renders are left out because they teach a quantizer or an evaluation nothing
about camera frames. Pure numpy/cv2 at import time: scikit-image and scikit-learn are imported only when
their photos are asked for, and a source that is not installed is skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from model.logs import log_event

log = logging.getLogger(__name__)

OPENCV_DATA = Path(os.environ.get("OPENCV_DOC_DATA", "/usr/share/doc/opencv-doc/examples/data"))

SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
)

# The first member of each natural view pair is listed here as a photo; its partner only in VIEW_PAIRS, so the
# instance-retrieval gallery holds no near-duplicate distractors.
OPENCV_PHOTOS = (
    "aero1.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "basketball1.png",
    "board.jpg",
    "box_in_scene.png",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "HappyFish.jpg",
    "home.jpg",
    "left.jpg",
    "leuvenA.jpg",
    "licenseplate_motion.jpg",
    "messi5.jpg",
    "orange.jpg",
    "pca_test1.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
    "Blender_Suzanne1.jpg",
)

VIEW_PAIRS: tuple[tuple[str, str], ...] = (
    ("box.png", "box_in_scene.png"),
    ("graf1.png", "graf3.png"),
    ("aero1.jpg", "aero3.jpg"),
    ("leuvenA.jpg", "leuvenB.jpg"),
    ("aloeL.jpg", "aloeR.jpg"),
    ("rubberwhale1.png", "rubberwhale2.png"),
    ("basketball1.png", "basketball2.png"),
    ("left.jpg", "right.jpg"),
    ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
    ("ela_original.jpg", "ela_modified.jpg"),
)
"""Natural view pairs from opencv-doc: the same scene from another viewpoint, exposure or time."""


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Gray, RGB, RGBA or bool image (scikit conventions) → BGR uint8."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def read_opencv_photo(name: str) -> np.ndarray:
    """One photo of opencv-doc's examples as BGR uint8 (alpha dropped, gray expanded)."""
    path = OPENCV_DATA / name
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"{path} not found: install the Debian package opencv-doc (make setup)")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def skimage_photos() -> Iterator[tuple[str, np.ndarray]]:
    try:
        import skimage.data as skdata
    except ImportError:
        log_event(log, "scikit_image_missing", logging.WARNING)
        return
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skdata, name)()
        except Exception as exc:  # data that would need a download raises; skip it rather than fetch
            log_event(log, "skimage_photo_unavailable", logging.DEBUG, photo=name, error=str(exc))
            continue
        yield f"skimage:{name}", to_bgr(np.asarray(image))


def sklearn_photos() -> Iterator[tuple[str, np.ndarray]]:
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        log_event(log, "scikit_learn_missing", logging.WARNING)
        return
    bunch = load_sample_images()
    for filename, image in zip(bunch.filenames, bunch.images, strict=True):
        yield f"sklearn:{Path(filename).stem}", to_bgr(np.asarray(image))


def opencv_photos() -> Iterator[tuple[str, np.ndarray]]:
    if not OPENCV_DATA.is_dir():
        log_event(log, "opencv_doc_photos_missing", logging.WARNING, folder=str(OPENCV_DATA), package="opencv-doc")
        return
    for name in OPENCV_PHOTOS:
        if (OPENCV_DATA / name).exists():
            yield f"opencv:{Path(name).stem}", read_opencv_photo(name)


def load_photos(limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """All available real photos in a fixed order (scikit-image, scikit-learn, opencv-doc)."""
    photos: list[tuple[str, np.ndarray]] = []
    for source in (skimage_photos(), sklearn_photos(), opencv_photos()):
        for item in source:
            photos.append(item)
            if limit is not None and len(photos) >= limit:
                return photos
    if not photos:
        raise FileNotFoundError("no real photos found: install scikit-image, scikit-learn or Debian opencv-doc")
    return photos


def load_view_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The natural view pairs present here, as ``(name, first, second)``."""
    pairs = []
    for first, second in VIEW_PAIRS:
        if (OPENCV_DATA / first).exists() and (OPENCV_DATA / second).exists():
            pairs.append((Path(first).stem, read_opencv_photo(first), read_opencv_photo(second)))
    try:
        import skimage.data as skdata

        left, right, _ = skdata.stereo_motorcycle()
        pairs.append(("stereo_motorcycle", to_bgr(left), to_bgr(right)))
    except Exception as exc:  # missing package or data: evaluate the pairs that are here
        log_event(log, "skimage_photo_unavailable", logging.DEBUG, photo="stereo_motorcycle", error=str(exc))
    return pairs
