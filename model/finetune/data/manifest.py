"""SageMaker augmented manifest: JSON Lines with ``source-ref`` and a label attribute.

Ground Truth image classification writes ``{"source-ref": "s3://b/k.jpg", "class": 3,
"class-metadata": {"class-name": "shoe", ...}}``; the label attribute is named by the labelling job, so it
is given with ``--label-attribute`` or found as the one key that is neither ``source-ref`` nor
``*-metadata``. Nothing is downloaded: ``s3://bucket/key`` resolves to ``<image-root>/key``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.finetune.data.base import LabelledSet, LabelledSource, Problem, Sample, numbered_lines, register


@register
class ManifestSource(LabelledSource):
    name = "manifest"

    def __init__(self, image_root: Path | None = None, label_attribute: str | None = None) -> None:
        self.image_root = image_root
        self.label_attribute = label_attribute

    @classmethod
    def create(cls, image_root: Path | None = None, label_attribute: str | None = None) -> ManifestSource:
        return cls(image_root, label_attribute)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in (".manifest", ".jsonl", ".json")

    def read(self, path: Path) -> LabelledSet:
        result = LabelledSet()
        root = self.image_root or path.parent
        for where, line in numbered_lines(path):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                result.problems.append(Problem(where, f"not valid JSON ({exc.msg}), skipped"))
                continue
            if not isinstance(record, dict):
                result.problems.append(Problem(where, "not a JSON object, skipped"))
                continue
            try:
                sample = self._sample(record, root)
            except ValueError as exc:
                result.problems.append(Problem(where, f"{exc}, skipped"))
                continue
            result.samples.append(sample)
        return result

    def _sample(self, record: dict[str, Any], root: Path) -> Sample:
        ref = record.get("source-ref")
        if not isinstance(ref, str) or not ref:
            raise ValueError("no 'source-ref'")
        attribute = self.label_attribute or _guess_label_attribute(record)
        if attribute not in record:
            raise ValueError(f"no label attribute '{attribute}'")
        label = _label_name(record[attribute], record.get(f"{attribute}-metadata"))
        image = _resolve(ref, root)
        if not image.is_file():
            raise ValueError(f"image {image} (source-ref {ref}) does not exist")
        return Sample(image, label)


def _guess_label_attribute(record: dict[str, Any]) -> str:
    keys = [k for k in record if k != "source-ref" and not k.endswith("-metadata")]
    if len(keys) != 1:
        raise ValueError(f"cannot tell the label attribute among {keys}: pass --label-attribute")
    return keys[0]


def _label_name(value: Any, metadata: Any) -> str:
    if isinstance(metadata, dict) and isinstance(metadata.get("class-name"), str):
        return str(metadata["class-name"])
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"label {value!r} is not a class name or number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"label {value!r} is not a whole class number")
        value = int(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty label")
    return text


def _resolve(ref: str, root: Path) -> Path:
    if ref.startswith("s3://"):
        key = ref[len("s3://") :].split("/", 1)
        if len(key) != 2 or not key[1]:
            raise ValueError(f"source-ref {ref} has no object key")
        return root / key[1]
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
    path = Path(ref)
    return path if path.is_absolute() else root / path
