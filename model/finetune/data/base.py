"""What every labelled-image reader returns, and the choice of reader from the input's shape."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from model.contracts.errors import VisualSearchError


class DatasetError(VisualSearchError, ValueError):
    """The input cannot be trained on at all (unreadable, empty class, unknown format)."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str


@dataclass(frozen=True)
class Problem:
    """One input entry that was skipped, and why; reported to the user, never silently dropped."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class LabelledSet:
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(s.label for s in self.samples)

    @property
    def classes(self) -> list[str]:
        return sorted(self.counts())


def numbered_lines(path: Path) -> Iterator[tuple[str, str]]:
    """``(where, line)`` for each non-blank line of a list file (manifest, ``.lst``); ``where`` is
    ``path:line number``, so a skipped entry's problem names its line."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            yield f"{path}:{number}", line


class LabelledSource(ABC):
    """Reads one input format into samples (existing files only) and problems (entries skipped)."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def accepts(cls, path: Path) -> bool:
        """True when ``path`` looks like this format (a folder, ``*.manifest``/``*.jsonl``, ``*.lst``)."""

    @classmethod
    @abstractmethod
    def create(cls, image_root: Path | None = None, label_attribute: str | None = None) -> LabelledSource:
        """The reader with the options it uses (the others are ignored)."""

    @abstractmethod
    def read(self, path: Path) -> LabelledSet: ...


SOURCES: dict[str, type[LabelledSource]] = {}
_PLUGIN_MODULES = ("model.finetune.data.folder", "model.finetune.data.manifest", "model.finetune.data.lst")


def register(cls: type[LabelledSource]) -> type[LabelledSource]:
    SOURCES[cls.name] = cls
    return cls


def read_source(
    path: Path, image_root: Path | None = None, label_attribute: str | None = None, fmt: str = "auto"
) -> LabelledSet:
    """Read ``path`` with the reader ``fmt`` names, or the one that accepts it."""
    for module in _PLUGIN_MODULES:
        importlib.import_module(module)
    if not path.exists():
        raise DatasetError(f"training input {path} does not exist")
    if fmt != "auto":
        if fmt not in SOURCES:
            raise DatasetError(f"unknown input format '{fmt}' (known: {', '.join(sorted(SOURCES))})")
        cls = SOURCES[fmt]
    else:
        found = [c for c in SOURCES.values() if c.accepts(path)]
        if not found:
            raise DatasetError(
                f"cannot tell the format of {path}: expected a folder with one sub-folder per class,"
                " a SageMaker augmented manifest (.manifest/.jsonl/.json) or an im2rec list (.lst)"
            )
        cls = found[0]
    return cls.create(image_root=image_root, label_attribute=label_attribute).read(path)


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""Files a class folder may hold; the catalog rules then accept only real PNG/JPEG content."""
