"""The catalog index folder: what files it holds, how it is written (atomically) and loaded.

``manifest.json`` (model id, dim, index kind + params, count, created_at), ``vectors.npy``, ``ids.json``,
the index file, ``metadata.sqlite``, ``summary.json``, ``report.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_lambda.index import VectorIndex, create_index, load_index
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.metadata.sqlite_store import SqliteStore

MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
IDS = "ids.json"
METADATA = "metadata.sqlite"
SUMMARY = "summary.json"
REPORT = "report.jsonl"
FORMAT_VERSION = 1


class CatalogError(ValueError):
    """A catalog folder that is missing, incomplete or inconsistent."""


class IndexSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="exact | hnsw")
    params: dict[str, Any] = Field(default_factory=dict, description="Index parameters (M, efSearch, ...).")
    file: str = Field(description="Index file name inside the folder.")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    model_id: str = Field(description="Model id of every vector in this catalog.")
    dim: int = Field(gt=0)
    input_size: int | None = Field(default=None, description="Model input size (for photo search).")
    count: int = Field(ge=0)
    index: IndexSpec
    created_at: str
    shard: str | None = Field(default=None, description="i/n when this folder holds one shard.")


@dataclass
class Catalog:
    folder: Path
    manifest: Manifest
    ids: list[str]
    index: VectorIndex

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def dim(self) -> int:
        return self.manifest.dim


def write_catalog(
    out: Path,
    *,
    model_id: str,
    dim: int,
    input_size: int | None,
    ids: list[str],
    vectors: np.ndarray,
    records: list[ItemRecord],
    index_kind: str,
    index_params: dict[str, Any],
    summary: dict[str, Any],
    report_lines: list[dict[str, Any]],
    shard: str | None = None,
) -> Path:
    """Write everything into a temp sibling of ``out`` and swap it in, so ``out`` is never half-written."""
    if len(ids) != vectors.shape[0] or len(records) != len(ids):
        raise CatalogError(f"ids ({len(ids)}), vectors ({vectors.shape[0]}) and records ({len(records)}) differ")
    if any(r.model_id != model_id for r in records):
        raise CatalogError("a metadata record carries a model id other than the catalog's")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
        (tmp / IDS).write_text(json.dumps(ids))
        index = create_index(index_kind, dim, **index_params)
        index.build(vectors)
        index.save(tmp)
        store = SqliteStore(tmp / METADATA)
        store.put_many(records)
        store.close()
        manifest = Manifest(
            model_id=model_id,
            dim=dim,
            input_size=input_size,
            count=len(ids),
            index=IndexSpec(**index.describe()),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            shard=shard,
        )
        (tmp / REPORT).write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in report_lines))
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        # The manifest goes last: a folder without one is never loaded.
        (tmp / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
        _fsync_dir(tmp)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def swap_into_place(new: Path, out: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise CatalogError(f"{folder} is not a catalog index: no {MANIFEST} (run `visual-search catalog index`)")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(f"{path}: key '{'.'.join(map(str, first['loc']))}': {first['msg']}") from exc


def load_catalog(folder: str | Path, ef_search: int | None = None) -> Catalog:
    """Load a catalog (local folder, or ``s3://bucket/prefix`` downloaded once to /tmp)."""
    text = str(folder)
    if text.startswith("s3://"):
        from cloud_lambda.catalog.sources import download_prefix

        local = Path(tempfile.gettempdir()) / "vs-index" / text[len("s3://") :].replace("/", "_")
        if not (local / MANIFEST).exists():
            download_prefix(text, local)
        folder = local
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        ids = json.loads((folder / IDS).read_text())
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {folder / IDS}: {exc}") from exc
    params = dict(manifest.index.params)
    if ef_search is not None and manifest.index.kind == "hnsw":
        params["ef_search"] = ef_search
    index = load_index(folder, manifest.index.kind, manifest.dim, params)
    if index.count != len(ids) or len(ids) != manifest.count:
        raise CatalogError(f"{folder}: index holds {index.count} vectors, ids {len(ids)}, manifest {manifest.count}")
    return Catalog(folder=folder, manifest=manifest, ids=ids, index=index)
