"""Check every image with the catalog's rules before training: bad ones are reported and skipped.

The rules (PNG/JPEG by content, ≤ 4 MB, sides 64..4096 px, aspect ≤ 20:1, complete and decodable) are the
ones catalog indexing applies (both use :mod:`model.image_rules`), so a fine-tuning set and the catalog it
serves accept the same files.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

from model.finetune.data.base import LabelledSet, Problem
from model.image_rules import decode

ImageCheck = Callable[[bytes], object]
"""Raises ``ValueError`` (with a readable message) for an image that must not be used."""


def catalog_rules() -> ImageCheck:
    return decode


def validate_images(dataset: LabelledSet, check: ImageCheck | None = None, progress: bool = True) -> LabelledSet:
    """Samples whose files pass ``check``; the others become problems naming the file and the rule."""
    check = check or catalog_rules()
    kept = LabelledSet(problems=list(dataset.problems))
    for sample in tqdm(dataset.samples, desc="validating images", unit="img", disable=not progress):
        try:
            data = sample.path.read_bytes()
        except OSError as exc:
            kept.problems.append(Problem(str(sample.path), f"unreadable ({exc.strerror or exc}), skipped"))
            continue
        try:
            check(data)
        except ValueError as exc:
            reason = getattr(exc, "reason", "rejected")
            kept.problems.append(Problem(str(sample.path), f"{reason}: {exc}, skipped"))
            continue
        kept.samples.append(sample)
    return kept
