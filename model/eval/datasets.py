"""The three evaluation sets, all from installed packages and built deterministically."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.data.photos import VIEW_PAIRS, load_photos, load_view_pairs
from model.data.views import camera_views

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class RetrievalSet:
    """Images with labels; each image queries all the others, relevant = same label."""

    name: str
    images: list[np.ndarray]
    labels: np.ndarray
    queries: np.ndarray | None = None
    """Indices of the images that act as queries (default: all)."""


def instance_views(views_per_photo: int = 5, seed: int = 0, strength: float = 1.0) -> RetrievalSet:
    """Each real photo plus camera-like views of it; a view must find its own photo's other views/original."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    for i, (_, photo) in enumerate(load_photos()):
        images.append(photo)
        images.extend(camera_views(photo, views_per_photo, seed=seed * 1000 + i, strength=strength))
        labels.extend([i] * (views_per_photo + 1))
    return RetrievalSet("instance: photos × camera views", images, np.array(labels))


def natural_pairs() -> RetrievalSet:
    """opencv-doc view pairs among the other photos as distractors; each pair member must find its partner."""
    pairs = load_view_pairs()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for i, (_, first, second) in enumerate(pairs):
        images += [first, second]
        labels += [i, i]
    queries = np.arange(len(images))
    in_pairs = {f"opencv:{Path(n).stem}" for pair in VIEW_PAIRS for n in pair}
    for j, (name, photo) in enumerate(load_photos()):
        if name not in in_pairs:
            images.append(photo)
            labels.append(10_000 + j)  # a distractor: relevant to nothing
    return RetrievalSet("natural view pairs (+ distractors)", images, np.array(labels), queries)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(count: int = 2000, seed: int = 0) -> RetrievalSet:
    """A stratified sample of the Fashion-MNIST test set (28×28 gray → BGR); relevant = same category."""
    images_path = FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    labels_path = FASHION_MNIST / "t10k-labels-idx1-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(f"{images_path} missing: install the Debian package dataset-fashion-mnist")
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    rng = np.random.default_rng(seed)
    per_class = count // 10
    picked = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)])
    # Fashion-MNIST is white-on-black; invert to the dark-on-light look of a product photo.
    sample = [np.repeat(255 - images[i][:, :, None], 3, axis=2) for i in picked]
    return RetrievalSet(f"Fashion-MNIST categories ({len(picked)} images)", sample, labels[picked].astype(np.int64))
