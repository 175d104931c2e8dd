"""The catalog index folder: what files it holds, how it is written (atomically) and loaded.

``manifest.json`` (model id, dim, index kind + params, count, created_at, retrieval settings, adaptation),
``vectors.npy`` (the model's vectors, as the device computes them), ``ids.json`` (item ids), ``owners.npy``
(item position of every index row, when items have several views), the index file, ``metadata.sqlite``,
``summary.json``, ``report.jsonl``, and ``head.npz`` when the catalog is adapted: the projection head
(:mod:`model.retrieval.head`) the index's vectors went through and every query goes through.
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
from cloud_lambda.index.choice import AUTO, choose, describe_bands
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.metadata.sqlite_store import SqliteStore
from model.contracts.errors import VisualSearchError
from model.retrieval.catalog_views import CatalogViews
from model.retrieval.head import HEAD_FILE, HeadError, ProjectionHead
from model.retrieval.settings import catalog_views_of

MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
IDS = "ids.json"
OWNERS = "owners.npy"
METADATA = "metadata.sqlite"
SUMMARY = "summary.json"
REPORT = "report.jsonl"
FORMAT_VERSION = 1


class CatalogError(VisualSearchError, ValueError):
    """A catalog folder that is missing, incomplete or inconsistent."""


class IndexSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="exact | hnsw | hnsw-fp16 | hnsw-sq8 | ivfpq (cloud_lambda.index)")
    params: dict[str, Any] = Field(default_factory=dict, description="Index parameters (M, efSearch, ...).")
    file: str = Field(description="Index file name inside the folder.")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    model_id: str = Field(description="Model id of every vector in this catalog.")
    dim: int = Field(gt=0)
    input_size: int | None = Field(default=None, description="Model input size (for photo search).")
    count: int = Field(ge=0, description="Catalog items (ids.json).")
    rows: int | None = Field(default=None, ge=0, description="Index rows (views × items); None: one per item.")
    index: IndexSpec
    created_at: str
    shard: str | None = Field(default=None, description="i/n when this folder holds one shard.")
    retrieval: dict[str, Any] | None = Field(
        default=None,
        description="Pooling, query regions and catalog views the index was built for"
        " (model.retrieval.settings.manifest_section); None: an index written before the section existed (one view per item).",
    )
    adaptation: dict[str, Any] | None = Field(
        default=None,
        description="The catalog's projection head (head.npz): kind, head_sha256, in_dim, out_dim, model_id,"
        " data_hash, settings, items, before/after figures (cloud_lambda.catalog.adapt); None: not adapted.",
    )

    @property
    def index_dim(self) -> int:
        """Dimension of the vectors in the index file: the head's output when adapted, else the model's."""
        return int(self.adaptation["out_dim"]) if self.adaptation else self.dim


@dataclass
class Catalog:
    folder: Path
    manifest: Manifest
    ids: list[str]
    index: VectorIndex
    owners: np.ndarray
    """Item position (into ``ids``) of every index row."""
    head: ProjectionHead | None = None
    """The catalog's projection head: queries are projected before the index is searched."""

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def views(self) -> CatalogViews:
        return catalog_views_of(self.manifest.retrieval)

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
    owners: np.ndarray | None = None,
    retrieval: dict[str, Any] | None = None,
    head: ProjectionHead | None = None,
    adaptation: dict[str, Any] | None = None,
) -> Path:
    """Write everything into a temp sibling of ``out`` and swap it in, so ``out`` is never half-written.

    ``owners`` (one item position per vector row) when items have several views; ``None``: row i is item i.
    ``index_kind`` ``auto`` picks the kind by the number of rows (``cloud_lambda.index.choice``) and records
    the choice in ``summary["index"]`` (updated in place, so the caller's printed summary shows it too).
    ``head`` + ``adaptation``: the index holds the projected vectors and the head is saved beside them
    (``vectors.npy`` keeps the model's vectors, so an item added later or a new head needs no re-featurizing).

    Long because the keyword signature is a whole catalog (19 lines); the body is checks and named writes.
    """
    if (head is None) != (adaptation is None):
        raise CatalogError("a projection head and its manifest section 'adaptation' go together")
    index_kind, index_params = _index_kind(
        index_kind, index_params, vectors, dim if head is None else head.out_dim, summary
    )
    owners = _checked_rows(model_id, ids, vectors, records, owners)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
        (tmp / IDS).write_text(json.dumps(ids))
        if owners is not None:
            np.save(tmp / OWNERS, owners)
        index, adaptation = _write_index(tmp, vectors, dim, index_kind, index_params, head, adaptation)
        _write_metadata(tmp, records)
        manifest = Manifest(
            model_id=model_id,
            dim=dim,
            input_size=input_size,
            count=len(ids),
            rows=int(vectors.shape[0]) if owners is not None else None,
            index=IndexSpec(**index.describe()),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            shard=shard,
            retrieval=retrieval,
            adaptation=adaptation,
        )
        _write_reports(tmp, summary, report_lines)
        # The manifest goes last: a folder without one is never loaded.
        (tmp / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
        _fsync_dir(tmp)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _index_kind(
    kind: str, params: dict[str, Any], vectors: np.ndarray, dim: int, summary: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """``auto``: the kind for this many rows, recorded in ``summary["index"]``; any other kind as given."""
    if kind != AUTO:
        return kind, params
    kind, params = choose(int(vectors.shape[0]), dim)
    summary["index"] = {"kind": kind, "params": params, "chosen_by": describe_bands()}
    return kind, params


def _write_metadata(folder: Path, records: list[ItemRecord]) -> None:
    store = SqliteStore(folder / METADATA)
    store.put_many(records)
    store.close()


def _write_reports(folder: Path, summary: dict[str, Any], report_lines: list[dict[str, Any]]) -> None:
    (folder / REPORT).write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in report_lines))
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _write_index(
    folder: Path,
    vectors: np.ndarray,
    dim: int,
    kind: str,
    params: dict[str, Any],
    head: ProjectionHead | None,
    adaptation: dict[str, Any] | None,
) -> tuple[Any, dict[str, Any] | None]:
    """Build and save the index (of the head's projections when adapted, the head beside it); → (index, the
    adaptation section with the head's hash and dimensions added)."""
    if head is not None and adaptation is not None:
        if head.in_dim != dim:
            raise CatalogError(f"the projection head takes {head.in_dim}-d vectors, the catalog's are {dim}-d")
        head.save(folder)
        adaptation = {**adaptation, "head_sha256": head.sha256, "in_dim": head.in_dim, "out_dim": head.out_dim}
    index = create_index(kind, dim if head is None else head.out_dim, **params)
    index.build(vectors if head is None else head.project(np.asarray(vectors, dtype=np.float32)))
    index.save(folder)
    return index, adaptation


def _checked_rows(
    model_id: str, ids: list[str], vectors: np.ndarray, records: list[ItemRecord], owners: np.ndarray | None
) -> np.ndarray | None:
    """The owners as int64 after checking that ids, vector rows, owners and records agree (CatalogError if not)."""
    if owners is not None:
        owners = np.asarray(owners, dtype=np.int64)
        if owners.shape != (vectors.shape[0],) or (len(owners) and (owners.min() < 0 or owners.max() >= len(ids))):
            raise CatalogError(f"owners must give one item position (0..{len(ids) - 1}) per vector row")
        if len(np.unique(owners)) != len(ids):
            raise CatalogError("every item needs at least one vector row")
    elif len(ids) != vectors.shape[0]:
        raise CatalogError(f"ids ({len(ids)}) and vectors ({vectors.shape[0]}) differ")
    if len(records) != len(ids):
        raise CatalogError(f"ids ({len(ids)}) and records ({len(records)}) differ")
    if any(r.model_id != model_id for r in records):
        raise CatalogError("a metadata record carries a model id other than the catalog's")
    return owners


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
        from cloud_lambda.catalog.roots import S3Root

        # Only the files a search needs (roots.SEARCH_FILES + the index file), not vectors.npy.
        root = S3Root(text)
        if not root.single:
            raise CatalogError(f"{text} holds no manifest.json (a root of several indexes: open it with roots)")
        folder = root.local_folder(root.model_ids()[0])
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        ids = json.loads((folder / IDS).read_text())
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {folder / IDS}: {exc}") from exc
    params = dict(manifest.index.params)
    if ef_search is not None and "ef_search" in manifest.index.params:
        params["ef_search"] = ef_search
    head = load_head(folder, manifest)
    index = load_index(folder, manifest.index.kind, manifest.index_dim, params)
    if (folder / OWNERS).exists():
        try:
            owners = np.load(folder / OWNERS, allow_pickle=False).astype(np.int64)
        except (OSError, ValueError) as exc:
            raise CatalogError(f"cannot read {folder / OWNERS}: {exc}") from exc
    else:
        owners = np.arange(len(ids), dtype=np.int64)
    rows = manifest.rows if manifest.rows is not None else manifest.count
    if index.count != len(owners) or index.count != rows or len(ids) != manifest.count:
        raise CatalogError(
            f"{folder}: index holds {index.count} vectors, owners {len(owners)}, manifest rows {rows};"
            f" ids {len(ids)}, manifest count {manifest.count}"
        )
    if len(owners) and (owners.min() < 0 or owners.max() >= len(ids)):
        raise CatalogError(f"{folder}: {OWNERS} points outside ids.json")
    try:
        views = catalog_views_of(manifest.retrieval)
    except ValidationError as exc:
        raise CatalogError(f"{folder / MANIFEST}: key 'retrieval.catalog_views': {exc.errors()[0]['msg']}") from exc
    if views.count * len(ids) != index.count:
        raise CatalogError(
            f"{folder}: manifest says {views.count} view(s) per item, but {index.count} rows for {len(ids)} items"
        )
    return Catalog(folder=folder, manifest=manifest, ids=ids, index=index, owners=owners, head=head)


def load_head(folder: Path, manifest: Manifest) -> ProjectionHead | None:
    """The folder's projection head, checked against the manifest (hash, dimensions); None when not adapted."""
    if not manifest.adaptation:
        if (Path(folder) / HEAD_FILE).exists():
            raise CatalogError(f"{folder}: {HEAD_FILE} present but the manifest has no 'adaptation' section")
        return None
    try:
        head = ProjectionHead.load(folder, manifest.adaptation.get("head_sha256"))
    except HeadError as exc:
        raise CatalogError(str(exc)) from exc
    if head.in_dim != manifest.dim or head.out_dim != manifest.index_dim:
        raise CatalogError(
            f"{folder}: head maps {head.in_dim}→{head.out_dim}, manifest says {manifest.dim}→{manifest.index_dim}"
        )
    return head


def read_vectors(folder: Path) -> np.ndarray:
    """The model's vectors of every index row (``vectors.npy``), as the indexer computed them."""
    try:
        return np.load(Path(folder) / VECTORS, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {Path(folder) / VECTORS}: {exc}") from exc


def apply_head(folder: Path, head: ProjectionHead | None, adaptation: dict[str, Any] | None) -> Path:
    """Rewrite ``folder``'s index through ``head`` (None: back to the model's vectors), atomically.

    Everything but the index file, the head and the manifest is carried over unchanged (hard links where the
    file system allows); the index is rebuilt from ``vectors.npy`` with the same kind and parameters, or with
    ``--index auto``'s choice for the new vectors' dimension when auto had chosen them.
    """
    if (head is None) != (adaptation is None):
        raise CatalogError("a projection head and its manifest section 'adaptation' go together")
    folder = Path(folder)
    manifest = read_manifest(folder)
    vectors = read_vectors(folder)
    if head is not None and head.in_dim != manifest.dim:
        raise CatalogError(f"the projection head takes {head.in_dim}-d vectors, {folder} holds {manifest.dim}-d")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for path in folder.iterdir():
            if path.name in (MANIFEST, HEAD_FILE, manifest.index.file) or not path.is_file():
                continue
            try:
                os.link(path, tmp / path.name)
            except OSError:
                shutil.copy2(path, tmp / path.name)
        if head is not None and adaptation is not None:
            head.save(tmp)
            adaptation = {**adaptation, "head_sha256": head.sha256, "in_dim": head.in_dim, "out_dim": head.out_dim}
        index_dim = manifest.dim if head is None else head.out_dim
        kind, params = _kind_for_space(folder, tmp, manifest, index_dim)
        index = create_index(kind, index_dim, **params)
        index.build(vectors if head is None else head.project(vectors))
        index.save(tmp)
        updated = manifest.model_copy(update={"adaptation": adaptation, "index": IndexSpec(**index.describe())})
        (tmp / MANIFEST).write_text(json.dumps(updated.model_dump(mode="json"), indent=2) + "\n")
        _fsync_dir(tmp)
        swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _kind_for_space(folder: Path, tmp: Path, manifest: Manifest, index_dim: int) -> tuple[str, dict[str, Any]]:
    """The folder's index kind and parameters — or, when ``--index auto`` chose them (``summary.json`` says so),
    auto's choice for the vectors the index now holds: an adapted catalog's head space has bands of its own
    (cloud_lambda.index.choice), so the kind chosen for the model's 1280-d vectors is chosen again."""
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        summary = {}
    chosen = summary.get("index") if isinstance(summary, dict) else None
    if not (isinstance(chosen, dict) and chosen.get("chosen_by")):
        return manifest.index.kind, dict(manifest.index.params)
    rows = manifest.rows if manifest.rows is not None else manifest.count
    kind, params = choose(rows, index_dim)
    summary["index"] = {"kind": kind, "params": params, "chosen_by": describe_bands()}
    (tmp / SUMMARY).unlink(missing_ok=True)  # a hard link to the live folder's file: never written through
    (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return kind, params


def carried_head(folder: Path, model_id: str) -> dict[str, Any]:
    """``head`` and ``adaptation`` of an existing index at ``folder`` made with ``model_id`` (else none), so that
    re-indexing an adapted catalog keeps its head and projects the new items through it."""
    try:
        manifest = read_manifest(folder)
        if not manifest.adaptation or manifest.model_id != model_id:
            return {}
        head = load_head(Path(folder), manifest)
    except CatalogError:
        return {}
    section = {k: v for k, v in manifest.adaptation.items() if k not in ("head_sha256", "in_dim", "out_dim")}
    return {"head": head, "adaptation": section}
