"""Item metadata from a JSONL or CSV file (id, title, image_url, any extra fields), or from file names.

A row names its image with ``file`` (or ``image``/``path``) relative to the source; without one, the row's
``id`` is matched to the file name without extension.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath
from typing import Any

FILE_KEYS = ("file", "image", "path")


class ItemsError(ValueError):
    """The metadata file cannot be read; the message names the line."""


def read_item_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                for number, row in enumerate(csv.DictReader(handle), start=2):
                    rows.append(_check_row({k.strip(): v for k, v in row.items() if k}, path, number))
        else:
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ItemsError(f"{path}:{number}: not JSON: {exc}") from exc
                    rows.append(_check_row(row, path, number))
    except OSError as exc:
        raise ItemsError(f"cannot read metadata file {path}: {exc}") from exc
    return rows


def _check_row(row: Any, path: Path, number: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ItemsError(f"{path}:{number}: each row must be an object")
    item_id = row.get("id")
    if not isinstance(item_id, str | int) or str(item_id).strip() == "":
        raise ItemsError(f"{path}:{number}: row has no 'id'")
    row["id"] = str(item_id).strip()
    return row


def stem_of(key: str) -> str:
    pure = PurePosixPath(key)
    return str(pure.with_suffix("")) if pure.suffix else key


def title_from_key(key: str) -> str:
    return PurePosixPath(key).stem.replace("_", " ").replace("-", " ").strip().capitalize()


def match_rows(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """→ (rows by explicit file key, rows by id) for :func:`row_for`."""
    by_file: dict[str, dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        file_key = next((str(row[k]) for k in FILE_KEYS if row.get(k)), None)
        if file_key:
            by_file[file_key] = row
        by_id[row["id"]] = row
    return by_file, by_id


def row_for(key: str, by_file: dict[str, dict[str, Any]], by_id: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    return by_file.get(key) or by_file.get(PurePosixPath(key).name) or by_id.get(stem_of(key))
