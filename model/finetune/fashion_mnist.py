"""Materialize Debian's ``dataset-fashion-mnist`` (IDX files) as class folders of PNG product images.

The 28×28 originals are upscaled (``--size``, default 96 px, ≥ 64 px so the catalog rules accept them)
and written as ``<out>/train/<class>/`` (from the training file) and ``<out>/holdout/<class>/`` (from the
separate test file, so held-out images are never seen in training). Deterministic: the first N of each
class in file order.

    python -m model.finetune.fashion_mnist --out data/fashion-mnist --train-per-class 300 --holdout-per-class 100
"""

from __future__ import annotations

import argparse
import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic, dimension sizes, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {shape}")
    return body.reshape(shape)


def materialize(
    out: Path, train_per_class: int, holdout_per_class: int, size: int = 96, root: Path = DEFAULT_ROOT
) -> dict[str, Path]:
    if size < 64:
        raise ValueError(f"size {size} px is below the catalog rules' 64 px minimum")
    written: dict[str, Path] = {}
    for split, prefix, per_class in (("train", "train", train_per_class), ("holdout", "t10k", holdout_per_class)):
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        target = out / split
        for index, label in tqdm(
            [(i, int(lab)) for lab in range(len(CLASSES)) for i in np.flatnonzero(labels == lab)[:per_class]],
            desc=f"fashion-mnist {split}",
            unit="img",
        ):
            path = target / CLASSES[label] / f"{prefix}-{index:05d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), cv2.resize(images[index], (size, size), interpolation=cv2.INTER_CUBIC))
        written[split] = target
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="folder to write train/ and holdout/ into")
    parser.add_argument("--train-per-class", type=int, default=300, help="training images per class (of 6000)")
    parser.add_argument("--holdout-per-class", type=int, default=100, help="held-out images per class (of 1000)")
    parser.add_argument("--size", type=int, default=96, help="side of the written PNGs in px (≥ 64)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder with the *-ubyte.gz files")
    args = parser.parse_args(argv)
    for split, path in materialize(
        args.out, args.train_per_class, args.holdout_per_class, args.size, args.root
    ).items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
