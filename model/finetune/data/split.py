"""Train/validation split: stratified and seeded, or two inputs checked against each other."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass

from model.finetune.data.base import DatasetError, Sample
from model.sidecar import file_sha256


@dataclass(frozen=True)
class Split:
    train: list[Sample]
    val: list[Sample]
    classes: list[str]

    def label_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}


def stratified_split(samples: list[Sample], val_fraction: float, seed: int) -> Split:
    """Each class contributes ``round(n * val_fraction)`` (at least one) images to validation."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    _check_classes(by_class, minimum=2, what="training input")
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda s: str(s.path))
        rng.shuffle(members)
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return Split(train=train, val=val, classes=sorted(by_class))


def given_split(train: list[Sample], val: list[Sample]) -> Split:
    """Separate inputs: every validation class must be one the model learns."""
    train_classes: dict[str, list[Sample]] = defaultdict(list)
    for sample in train:
        train_classes[sample.label].append(sample)
    _check_classes(train_classes, minimum=1, what="training input")
    if not val:
        raise DatasetError("the validation input holds no usable images")
    unknown = sorted({s.label for s in val} - set(train_classes))
    if unknown:
        raise DatasetError(f"validation classes {unknown} do not occur in the training input")
    return Split(train=list(train), val=list(val), classes=sorted(train_classes))


def _check_classes(by_class: dict[str, list[Sample]], minimum: int, what: str) -> None:
    if len(by_class) < 2:
        raise DatasetError(
            f"the {what} has {len(by_class)} class(es) with usable images; a classifier needs at least 2"
        )
    small = sorted(label for label, members in by_class.items() if len(members) < minimum)
    if small:
        raise DatasetError(
            f"class(es) {small} have fewer than {minimum} usable image(s) after validation;"
            " each class needs images in both training and validation"
        )


def data_hash(split: Split) -> str:
    """Content hash of what was trained on: labels, roles and file bytes, not paths (moving data keeps it)."""
    digest = hashlib.sha256()
    for role, members in (("train", split.train), ("val", split.val)):
        for line in sorted(f"{role}\t{s.label}\t{file_sha256(s.path)}" for s in members):
            digest.update(line.encode() + b"\n")
    return digest.hexdigest()
