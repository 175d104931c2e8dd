"""A folder with one sub-folder per class (Keras/ImageFolder layout)."""

from __future__ import annotations

from pathlib import Path

from model.finetune.data.base import (
    IMAGE_SUFFIXES,
    DatasetError,
    LabelledSet,
    LabelledSource,
    Problem,
    Sample,
    register,
)


@register
class FolderSource(LabelledSource):
    name = "folder"

    @classmethod
    def create(cls, image_root: Path | None = None, label_attribute: str | None = None) -> FolderSource:
        return cls()

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_dir()

    def read(self, path: Path) -> LabelledSet:
        result = LabelledSet()
        class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DatasetError(f"{path} has no class sub-folders: put each class's images in <folder>/<class>/")
        empty = []
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            result.problems.extend(
                Problem(str(p), f"not an image file name (suffix '{p.suffix}'), skipped")
                for p in files
                if p not in images
            )
            if not images:
                empty.append(class_dir.name)
            result.samples.extend(Sample(p, class_dir.name) for p in images)
        if empty:
            raise DatasetError(
                f"class folder(s) {', '.join(repr(e) for e in empty)} in {path} hold no images:"
                " add images or remove the folder"
            )
        return result
