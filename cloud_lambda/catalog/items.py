"""Item metadata from a JSONL or CSV file (id, title, image_url, any extra fields), or from file names.

A row names its image with ``file`` (or ``image``/``path``) relative to the source; without one, the row's
``id`` is matched to the file name without extension.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from model.contracts import bounded_json
from model.contracts.errors import Rejected, VisualSearchError

FILE_KEYS = ("file", "image", "path")
MAX_ID_CHARS = 256
MAX_TITLE_CHARS = 500
MAX_URL_CHARS = 2048
MAX_ROW_BYTES = 4096
"""A row's budget as JSON: ``top_k`` of them must fit one match record within IoT Core's 128 KB."""
MAX_PROBLEMS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ItemsError(VisualSearchError, ValueError):
    """The metadata file cannot be used; one line per problem, each naming the file and line."""


class RowProblem(VisualSearchError, ValueError):
    """What is wrong with one row (the caller adds where)."""


def read_item_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a JSONL or CSV metadata file, checked; raises :class:`ItemsError` listing the problems."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for number, raw in _raw_rows(path):
            try:
                rows.append(check_row(raw() if callable(raw) else raw))
            except (RowProblem, Rejected) as exc:
                problems.append(f"{path}:{number}: {exc}")
                if len(problems) >= MAX_PROBLEMS:
                    break
    except OSError as exc:
        raise ItemsError(f"cannot read metadata file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ItemsError(f"metadata file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if problems:
        raise ItemsError("; ".join(problems))
    return rows


def _raw_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, the row or a function that parses it): parse errors belong to their line."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, {k.strip(): v for k, v in row.items() if k}
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, functools.partial(_parse_line, line)


def _parse_line(line: str) -> Any:
    try:
        return bounded_json.loads(line, max_bytes=MAX_ROW_BYTES * 4, what="row")
    except Rejected as exc:
        if exc.reason == "oversize":
            raise RowProblem(f"row is over the {MAX_ROW_BYTES:,}-byte limit") from None
        if exc.reason == "not_json":
            raise RowProblem(f"not JSON: {exc}") from None
        raise


def check_row(row: Any) -> dict[str, Any]:
    """The row with a clean ``id``; raises :class:`RowProblem` naming the field that breaks a rule."""
    if not isinstance(row, dict):
        raise RowProblem("each row must be an object")
    row["id"] = _item_id(row.get("id"))
    for key, limit in (("title", MAX_TITLE_CHARS), ("image_url", MAX_URL_CHARS)):
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RowProblem(f"'{key}' must be a string, got {_describe(value)}")
        if len(value) > limit:
            raise RowProblem(f"'{key}' is {len(value)} characters, over {limit}")
    size = len(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_ROW_BYTES:
        raise RowProblem(f"row is {size:,} bytes as JSON, over the {MAX_ROW_BYTES:,}-byte limit")
    return row


def _item_id(value: Any) -> str:
    if value is None:
        raise RowProblem("row has no 'id'")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowProblem(f"'id' must be a string or an integer, got {_describe(value)}")
    text = str(value).strip()
    if not text:
        raise RowProblem("'id' is empty")
    if len(text) > MAX_ID_CHARS:
        raise RowProblem(f"'id' is {len(text)} characters, over {MAX_ID_CHARS}")
    if _CONTROL.search(text):
        raise RowProblem("'id' holds a control character")
    return text


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"{type(value).__name__} {str(value)[:40]!r}"


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
