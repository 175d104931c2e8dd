"""Every index under the root, by model id: listed at start, loaded on first use, kept within a memory budget.

A message is routed to the index of its model id; only an id with no index is refused
(:class:`NoIndexForModel`, reason ``no_index_for_model``). A model id not in the listing makes the set list
the root again (at most every ``relist_s``), so an index added for a new model before its rollout is served
by containers that were already warm; an index retired since the last listing is dropped then too (until
that listing, or the container's end, a warm container keeps serving what it loaded: retiring is for
indexes no camera uses any more, see ``catalog indexes retire``).

Reload: a loaded index whose manifest changed on disk (``catalog adapt`` wrote a head, ``catalog index`` rebuilt
it) is loaded again, checked at most every ``reload_s`` on the first message after that. The old index serves
until the new one is completely loaded; a load that fails, or during which the manifest changed again (a
writer swapped the folder under it, so its files may come from two versions), is dropped and the old index
kept, to be tried again after ``reload_s``: a half-written index is never served. Writers swap a whole folder
in (``layout.write_catalog`` / ``apply_head``), so a complete folder is what a reader normally finds.
Roots that cannot tell a version cheaply (S3) keep a loaded index until the container ends.

Memory: each loaded index is charged its index file plus its ids (≈ :data:`ID_BYTES` per item in Python);
loading one that would pass the budget first unloads the least recently used others. One that is alone
over budget is still loaded (and logged): refusing it would drop all of its traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_lambda.catalog.layout import OWNERS, Catalog, CatalogError, load_catalog
from cloud_lambda.catalog.roots import IndexRoot
from cloud_lambda.logs import Counters
from cloud_lambda.metadata import MetadataStore, open_metadata_store
from cloud_lambda.search.threads import limit_compute_threads
from model.contracts.errors import VisualSearchError
from model.logs import log_event

ID_BYTES = 80
"""Python ``str`` + list slot per item id, beyond the index file (measured: docs/scale.md)."""


class NoIndexForModel(VisualSearchError, LookupError):
    def __init__(self, model_id: str, known: list[str]) -> None:
        self.model_id = model_id
        self.known = known
        super().__init__(
            f"no index for model {model_id!r}; this search has indexes for {', '.join(known) or 'no model'}:"
            " index the catalog with that model (`visual-search catalog index SOURCE --model M.onnx --root ROOT`,"
            " before moving cameras to it) or use a model the root has"
        )


@dataclass
class LoadedCatalog:
    catalog: Catalog
    metadata: MetadataStore
    bytes: int
    load_ms: float
    metadata_cache: dict[str, Any] = field(default_factory=dict)
    last_used: float = 0.0
    version: str | None = None
    """The root's version of the manifest this was loaded from (None: the root cannot tell; never reloaded)."""
    checked_at: float = 0.0


def charged_bytes(folder: Path, catalog: Catalog) -> int:
    index_file = folder / catalog.manifest.index.file
    owners = folder / OWNERS
    return (
        (index_file.stat().st_size if index_file.exists() else 0)
        + (owners.stat().st_size if owners.exists() else 0)
        + ID_BYTES * len(catalog.ids)
    )


class CatalogSet:
    def __init__(
        self,
        root: IndexRoot,
        *,
        ef_search: int | None = None,
        metadata_spec: str = "",
        budget_bytes: int | None = None,
        relist_s: float = 60.0,
        reload_s: float = 10.0,
        log: logging.Logger,
        counters: Counters,
        preloaded: Catalog | None = None,
        metadata: MetadataStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.ef_search = ef_search
        self.metadata_spec = metadata_spec
        self.budget_bytes = budget_bytes
        self.relist_s = relist_s
        self.reload_s = reload_s
        self.log = log
        self.counters = counters
        self._clock = clock
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._loaded: dict[str, LoadedCatalog] = {}
        self._shared_metadata = metadata or (open_metadata_store(metadata_spec) if metadata_spec else None)
        self._newest: str | None = None
        if preloaded is not None:
            # A catalog handed in (tests, tools): the set holds only it.
            store = metadata or self._metadata_for(preloaded.folder)
            self._listed = [preloaded.model_id]
            self._listed_at = float("inf")
            self._loaded[preloaded.model_id] = LoadedCatalog(preloaded, store, 0, 0.0)
            return
        self._listed = root.model_ids()
        self._listed_at = clock()
        if not self._listed:
            raise CatalogError(
                f"{root.uri} holds no catalog index (no <model id>/manifest.json, no manifest.json):"
                " run `visual-search catalog index`"
            )

    # --- listing -----------------------------------------------------------------------------------------
    def model_ids(self) -> list[str]:
        with self._lock:
            return list(self._listed)

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded)

    def _relist(self) -> None:
        """List the root again if the last listing is older than ``relist_s``; unload what was retired."""
        with self._lock:
            if self._clock() - self._listed_at < self.relist_s:
                return
            self._listed_at = self._clock()
        listed = self.root.model_ids()
        with self._lock:
            gone = [model_id for model_id in self._loaded if model_id not in listed]
            for model_id in gone:
                del self._loaded[model_id]
            if listed != self._listed:
                self._newest = None
            self._listed = listed
        log_event(self.log, "index_root_listed", model_ids=listed, unloaded=gone)

    # --- loading -----------------------------------------------------------------------------------------
    def get(self, model_id: str) -> LoadedCatalog:
        """The loaded index of ``model_id``; raises :class:`NoIndexForModel` when the root has none."""
        with self._lock:
            entry = self._loaded.get(model_id)
            if entry is not None:
                entry.last_used = self._clock()
            listed = model_id in self._listed
        if entry is not None:
            return self._fresh(model_id, entry)
        if not listed:
            self._relist()
            with self._lock:
                if model_id not in self._listed:
                    raise NoIndexForModel(model_id, list(self._listed))
        with self._gate(model_id):  # one load per model id; other model ids keep being served meanwhile
            with self._lock:
                entry = self._loaded.get(model_id)
            return entry if entry is not None else self._load(model_id)

    def _gate(self, model_id: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(model_id, threading.Lock())

    def _fresh(self, model_id: str, entry: LoadedCatalog) -> LoadedCatalog:
        """``entry``, or the index loaded again when its manifest changed (checked at most every ``reload_s``).

        Never waits: while another thread checks or reloads, this one is served the index it has."""
        if entry.version is None or self._clock() - entry.checked_at < self.reload_s:
            return entry
        gate = self._gate(model_id)
        if not gate.acquire(blocking=False):
            return entry
        try:
            entry.checked_at = self._clock()
            try:
                if self.root.version(model_id) == entry.version:
                    return entry
                return self._load(model_id, reloading=True)
            except (VisualSearchError, OSError, ValueError) as exc:
                # Mid-swap, half-copied or broken: keep serving the complete index we have; try again later.
                self.counters.inc("index_reload_failed")
                log_event(self.log, "index_reload_failed", logging.WARNING, model_id=model_id, error=str(exc)[:500])
                return entry
        finally:
            gate.release()

    def _read_consistent(self, model_id: str) -> tuple[Path, Catalog, str | None]:
        """(folder, catalog, version) of one version of the index: the manifest's version is read before and after
        the files, and a load that straddles a change is refused (its files may come from two versions)."""
        version = self.root.version(model_id)
        folder = self.root.local_folder(model_id)
        catalog = load_catalog(folder, ef_search=self.ef_search)
        if catalog.model_id != model_id:
            raise CatalogError(f"{folder}: its manifest says model {catalog.model_id!r}, the folder {model_id!r}")
        if self.root.version(model_id) != version:
            raise CatalogError(f"{folder} changed while it was being loaded")
        return folder, catalog, version

    def _load(self, model_id: str, reloading: bool = False) -> LoadedCatalog:
        started = time.perf_counter()
        folder, catalog, version = self._read_consistent(model_id)
        now = self._clock()
        entry = LoadedCatalog(
            catalog,
            self._metadata_for(folder),
            charged_bytes(folder, catalog),
            round((time.perf_counter() - started) * 1000, 1),
            last_used=now,
            version=version,
            checked_at=now,
        )
        with self._lock:
            self._loaded.pop(model_id, None)  # a reload replaces it: its bytes are not charged twice
            evicted = self._make_room(entry.bytes)
            self._loaded[model_id] = entry
            total = sum(e.bytes for e in self._loaded.values())
        for gone in evicted:
            self.counters.inc("index_evicted")
            log_event(self.log, "index_evicted", logging.WARNING, model_id=gone, for_model=model_id)
        if self.budget_bytes is not None and total > self.budget_bytes:
            log_event(self.log, "index_over_budget", logging.WARNING, model_id=model_id, mb=round(total / 2**20))
        limit_compute_threads()
        self.counters.inc("index_reloaded" if reloading else "index_loaded")
        log_event(
            self.log,
            "index_reloaded" if reloading else "index_loaded",
            model_id=model_id,
            head=catalog.head.sha256[:12] if catalog.head is not None else None,
            items=len(catalog.ids),
            rows=catalog.index.count,
            index=catalog.manifest.index.kind,
            mb=round(entry.bytes / 2**20, 1),
            load_ms=entry.load_ms,
        )
        return entry

    def _make_room(self, needed: int) -> list[str]:
        """Unload least recently used indexes until ``needed`` more bytes fit (caller holds the lock)."""
        if self.budget_bytes is None:
            return []
        evicted = []
        by_age = sorted(self._loaded.items(), key=lambda item: item[1].last_used)
        total = sum(entry.bytes for entry in self._loaded.values())
        for model_id, entry in by_age:
            if total + needed <= self.budget_bytes:
                break
            del self._loaded[model_id]
            total -= entry.bytes
            evicted.append(model_id)
        return evicted

    def _metadata_for(self, folder: Path) -> MetadataStore:
        # A shared store (DynamoDB, one sqlite file) serves every index; else each index folder has its own.
        return self._shared_metadata or open_metadata_store("", folder)

    def newest(self) -> str:
        """The model id whose index was created last (what a single-model view such as /api/health shows)."""
        with self._lock:
            newest, ids = self._newest, list(self._listed)
        if newest is None or newest not in ids:
            if len(ids) == 1:
                newest = ids[0]
            else:
                newest = max(ids, key=lambda model_id: (self.root.manifest(model_id).created_at, model_id))
            with self._lock:
                self._newest = newest
        return newest
