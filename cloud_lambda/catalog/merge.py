"""Combine shard folders (``catalog index --shard i/n``) into one catalog, equal to a single run's."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cloud_lambda.catalog.layout import (
    IDS,
    METADATA,
    OWNERS,
    REPORT,
    SUMMARY,
    VECTORS,
    CatalogError,
    read_manifest,
    write_catalog,
)
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.metadata.sqlite_store import SqliteStore


def merge_catalogs(
    shard_dirs: list[Path],
    out: Path,
    index_kind: str | None = None,
    index_params: dict[str, Any] | None = None,
    require_complete: bool = True,
) -> dict[str, Any]:
    """Check the shards agree (model, retrieval settings, a complete split), read them, write one catalog."""
    if not shard_dirs:
        raise CatalogError("no shard folders to merge")
    manifests = [read_manifest(d) for d in shard_dirs]
    first = manifests[0]
    _check_compatible(shard_dirs, manifests)
    if require_complete:
        _check_shards([m.shard for m in manifests], shard_dirs)
    merged = _Merged()
    for folder in shard_dirs:
        merged.add(folder)
    merged.items.sort(key=lambda item: item[0])
    multi_view = any(len(rows) != 1 for _, rows, _ in merged.items)
    kind = index_kind or first.index.kind
    params = (
        index_params if index_params is not None else (dict(first.index.params) if kind == first.index.kind else {})
    )
    summary_out: dict[str, Any] = {
        "model_id": first.model_id,
        "merged_from": [str(d) for d in shard_dirs],
        "shard": None,
        "listed": merged.totals["listed"],
        "indexed": len(merged.items),
        "rejected": sum(merged.reasons.values()),
        "rejects_by_reason": dict(sorted(merged.reasons.items())),
        "featurized_this_run": merged.totals["featurized_this_run"],
        "reused_from_journal": merged.totals["reused_from_journal"],
        "index": {"kind": kind, "params": params},
        "seconds": round(merged.seconds, 3),
    }
    items = merged.items
    write_catalog(
        out,
        model_id=first.model_id,
        dim=first.dim,
        input_size=first.input_size,
        ids=[item_id for item_id, _, _ in items],
        vectors=np.concatenate([rows for _, rows, _ in items]) if items else np.zeros((0, first.dim), np.float32),
        records=[record for _, _, record in items],
        index_kind=kind,
        index_params=params,
        summary=summary_out,
        report_lines=sorted(merged.report, key=lambda r: str(r.get("key") or r.get("id"))),
        owners=np.concatenate([np.full(len(rows), n, np.int64) for n, (_, rows, _) in enumerate(items)])
        if multi_view
        else None,
        retrieval=first.retrieval,
    )
    return summary_out


def _check_compatible(shard_dirs: list[Path], manifests: list[Any]) -> None:
    first = manifests[0]
    for folder, manifest in zip(shard_dirs, manifests, strict=True):
        if manifest.model_id != first.model_id or manifest.dim != first.dim:
            raise CatalogError(
                f"{folder} was indexed with {manifest.model_id} ({manifest.dim}-d), {shard_dirs[0]} with"
                f" {first.model_id} ({first.dim}-d): shards of different models cannot be merged"
            )
        if (manifest.retrieval or None) != (first.retrieval or None):
            raise CatalogError(
                f"{folder} was indexed with retrieval settings {manifest.retrieval}, {shard_dirs[0]} with"
                f" {first.retrieval}: shards with other catalog views or query settings cannot be merged"
            )


class _Merged:
    """What the shards hold together: per item its id, view rows ``[V, D]`` and record; reports and counts."""

    def __init__(self) -> None:
        self.items: list[tuple[str, np.ndarray, ItemRecord]] = []
        self.report: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self.seconds = 0.0
        self._owner: dict[str, Path] = {}

    def add(self, folder: Path) -> None:
        shard_ids = json.loads((folder / IDS).read_text())
        shard_vectors = np.load(folder / VECTORS, allow_pickle=False)
        shard_owners = (
            np.load(folder / OWNERS, allow_pickle=False)
            if (folder / OWNERS).exists()
            else np.arange(len(shard_ids), dtype=np.int64)
        )
        store = SqliteStore(folder / METADATA, create=False)
        by_id = {r.id: r for r in store.iter_all()}
        store.close()
        for position, item_id in enumerate(shard_ids):
            if item_id in self._owner:
                raise CatalogError(f"item id {item_id!r} is in both {self._owner[item_id]} and {folder}")
            self._owner[item_id] = folder
            if item_id not in by_id:
                raise CatalogError(f"{folder}: item {item_id!r} has a vector but no metadata")
            self.items.append((item_id, shard_vectors[shard_owners == position], by_id[item_id]))
        if (folder / REPORT).exists():
            self.report += [json.loads(line) for line in (folder / REPORT).read_text().splitlines() if line.strip()]
        summary = json.loads((folder / SUMMARY).read_text()) if (folder / SUMMARY).exists() else {}
        self.reasons.update(summary.get("rejects_by_reason", {}))
        for key in ("listed", "featurized_this_run", "reused_from_journal"):
            self.totals[key] += int(summary.get(key) or 0)
        self.seconds = max(self.seconds, float(summary.get("seconds") or 0.0))


def _check_shards(specs: list[str | None], dirs: list[Path]) -> None:
    parsed = []
    for spec, folder in zip(specs, dirs, strict=True):
        if not spec:
            raise CatalogError(f"{folder} is not a shard (no 'shard' in its manifest)")
        index, _, count = spec.partition("/")
        parsed.append((int(index), int(count)))
    counts = {count for _, count in parsed}
    if len(counts) != 1:
        raise CatalogError(f"shards come from different splits: {sorted(specs, key=str)}")
    total = counts.pop()
    have = sorted(index for index, _ in parsed)
    if have != list(range(total)):
        missing = sorted(set(range(total)) - set(have))
        raise CatalogError(f"shards {have} of {total}: missing {missing}, or one given twice")
