"""MXNet im2rec list: ``index<TAB>label<TAB>relative/path`` (the SageMaker image-classification .lst)."""

from __future__ import annotations

from pathlib import Path

from model.finetune.data.base import LabelledSet, LabelledSource, Problem, Sample, numbered_lines, register


@register
class LstSource(LabelledSource):
    name = "lst"

    def __init__(self, image_root: Path | None = None) -> None:
        self.image_root = image_root

    @classmethod
    def create(cls, image_root: Path | None = None, label_attribute: str | None = None) -> LstSource:
        return cls(image_root)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".lst"

    def read(self, path: Path) -> LabelledSet:
        result = LabelledSet()
        root = self.image_root or path.parent
        for where, line in numbered_lines(path):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                # More than three fields is a multi-label list: a classifier head needs exactly one label.
                result.problems.append(
                    Problem(where, f"expected 'index<TAB>label<TAB>path' (3 fields), got {len(fields)}, skipped")
                )
                continue
            _, raw_label, rel = fields
            try:
                value = float(raw_label)
            except ValueError:
                result.problems.append(Problem(where, f"label '{raw_label}' is not a number, skipped"))
                continue
            if not value.is_integer() or value < 0:
                result.problems.append(Problem(where, f"label '{raw_label}' is not a class index, skipped"))
                continue
            image = Path(rel) if Path(rel).is_absolute() else root / rel
            if not image.is_file():
                result.problems.append(Problem(where, f"image {image} does not exist, skipped"))
                continue
            result.samples.append(Sample(image, str(int(value))))
        return result
