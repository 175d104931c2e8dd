"""Catalog indexing: list → (worker processes) read, hash, validate, decode, prepare → batched featurize.

With ``views`` (``--catalog-views``) every image gives several index rows (crops, flips; the catalog then
"sees" the parts a camera will see), all owned by the one item; the search folds them back per item.

Resumable: every featurized batch is written as its own part file and then journaled by content hash, so a
killed run restarted with the same ``--out`` skips what it finished (workers do not even decode it). The
final folder is written to a temp dir and swapped in, never half-written (see ``layout.write_catalog``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cloud_lambda.catalog import items as items_mod
from cloud_lambda.catalog.layout import carried_head, write_catalog
from cloud_lambda.catalog.sources import CatalogSource, CatalogSourceError, open_source
from cloud_lambda.logs import get_logger
from cloud_lambda.metadata.base import RESERVED, ItemRecord
from model.contracts.errors import VisualSearchError
from model.image_rules import ImageRejected
from model.image_rules import decode as decode_image
from model.logs import log_event
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews, combine_rows

JOURNAL = "journal.jsonl"
LOCK = "lock"
WORKER_NICE = 10
PARTS = "parts"


class IndexingError(VisualSearchError, RuntimeError):
    """The run cannot proceed (bad options, a work dir of another model, an unreadable source)."""


def unusable(work_dir: Path, why: str) -> IndexingError:
    return IndexingError(
        f"work dir {work_dir} is unusable: {why}. Delete it to start over (rm -r '{work_dir}'; finished parts are"
        " re-featurized) or pass another --work-dir"
    )


class WorkDirLock:
    """An exclusive ``flock`` on ``<work dir>/lock`` for the whole run: a second indexer on the same ``--out``
    (or ``--work-dir``) is refused, naming the first. The kernel drops the lock when its holder dies, so a
    killed run never leaves a stale lock behind."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._fd: int | None = None

    def __enter__(self) -> WorkDirLock:
        path = self.work_dir / LOCK
        if self.work_dir.exists() and not self.work_dir.is_dir():
            raise unusable(self.work_dir, "it is a file, not a folder")
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unusable(self.work_dir, f"{exc.strerror or exc}: {exc.filename or path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise IndexingError(
                f"another indexing run (pid {holder}) is using work dir {self.work_dir}: wait for it to finish,"
                " or index into another --out or --work-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise IndexingError(f"shard {self.index}/{self.count}: need 0 <= i < n")

    def owns(self, key: str) -> bool:
        # crc32 of the key: stable across runs and machines, independent of listing order.
        return zlib.crc32(key.encode("utf-8")) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            raise IndexingError(f"--shard must look like i/n (0-based), got {text!r}")
        return cls(int(index), int(count))

    @classmethod
    def from_env(cls, count: int | None, env: dict[str, str] | None = None) -> Shard | None:
        """AWS Batch array jobs set ``AWS_BATCH_JOB_ARRAY_INDEX``; the size comes from --shard-count/VS_SHARD_COUNT."""
        source = os.environ if env is None else env
        if "AWS_BATCH_JOB_ARRAY_INDEX" not in source:
            # Batch arrays have at least 2 children; a 1-shard job is a plain job writing shard 0/1.
            return cls(0, 1) if count == 1 else None
        total = count or int(source.get("VS_SHARD_COUNT", "0") or 0)
        if total < 1:
            raise IndexingError("AWS_BATCH_JOB_ARRAY_INDEX is set but the shard count is not (--shard-count)")
        return cls(int(source["AWS_BATCH_JOB_ARRAY_INDEX"]), total)


@dataclass
class IndexOptions:
    source: str
    out: Path
    model: Path
    metadata: Path | None = None
    index_kind: str = "exact"
    index_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    workers: int = max(1, (os.cpu_count() or 2) - 1)
    shard: Shard | None = None
    work_dir: Path | None = None
    image_base_url: str | None = None
    backend: str = "auto"
    threads: int | None = None
    progress: bool = True
    views: CatalogViews | None = None
    """None: the model's default (:func:`model.retrieval.settings.default_catalog_views`), resolved by run_index."""

    @property
    def resolved_views(self) -> CatalogViews:
        """The views in force (run_index sets the model's default before anything reads this)."""
        return SINGLE_VIEW if self.views is None else self.views

    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.out.with_name(self.out.name + ".work")


# --- worker side (a separate process) -------------------------------------------------------------------
_W: dict[str, Any] = {}


def _worker_init(
    source: CatalogSource, input_size: int, skip: frozenset[str], nice: int = 0, views: CatalogViews = SINGLE_VIEW
) -> None:
    _W.update(source=source, size=input_size, skip=skip, views=views)
    if nice:
        # The featurizer's threads work in lock-step: a decode process that preempts one of them stalls the
        # whole batch. At a lower priority, decoding fills the gaps instead of breaking into inference.
        os.nice(nice)


def _worker_prepare(key: str) -> tuple[str, str, str, Any]:
    """→ (key, sha256, kind, payload); kind: done | ok (prepared views ``[V, S, S, 3]``) | reject ((reason, message))."""
    from model.prepare import prepare_frame
    from model.retrieval.catalog_views import catalog_views

    try:
        data = _W["source"].read(key)
    except CatalogSourceError as exc:
        return key, "", "read_error", ("read_error", str(exc))
    sha = hashlib.sha256(data).hexdigest()
    if sha in _W["skip"]:
        return key, sha, "done", None
    try:
        # DCT scaling is itself an anti-aliased reduction, so stopping at the input size loses nothing that
        # prepare_frame's INTER_AREA would keep, and skips most of the decode (performance.md).
        views: CatalogViews = _W["views"]
        size: int = _W["size"]
        # A crop of fraction s of the short side must still hold `size` pixels after the DCT reduction.
        smallest = min((*views.scales, 1.0))
        image, _ = decode_image(data, min_side=int(np.ceil(size / smallest)))
        if views.images == 1:
            return key, sha, "ok", prepare_frame(image, size)[None]
        return key, sha, "ok", np.stack([prepare_frame(view, size) for view in catalog_views(image, views)])
    except ImageRejected as exc:
        return key, sha, "reject", (exc.reason, str(exc))
    except Exception as exc:  # a decoder crash on one file must not stop the run
        return key, sha, "reject", ("undecodable", f"{type(exc).__name__}: {exc}")


# --- journal --------------------------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines, fsynced; a torn last line (killed mid-write) is ignored on reload."""

    def __init__(self, work_dir: Path, model_id: str, views: CatalogViews = SINGLE_VIEW) -> None:
        self.dir = work_dir
        self.path = work_dir / JOURNAL
        self.views_count = views.count
        self.parts: list[str] = []
        self.done: set[str] = set()
        self.rejects: dict[str, dict[str, Any]] = {}
        try:
            (work_dir / PARTS).mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self._load(model_id, views)
            else:
                views_json = views.model_dump(mode="json")
                self._append({"model_id": model_id, "catalog_views": views_json, "created_at": time.time()})
        except OSError as exc:
            raise unusable(work_dir, f"{exc.strerror or exc}: {exc.filename or work_dir}") from exc

    def _load(self, model_id: str, views: CatalogViews) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) - 1:
                    continue
                raise unusable(self.dir, f"{self.path.name} line {number + 1} is corrupt") from None
            if "model_id" in entry and entry["model_id"] != model_id:
                raise IndexingError(
                    f"work dir {self.dir} holds vectors of model {entry['model_id']}, not {model_id}:"
                    " use another --out/--work-dir or delete it"
                )
            if "model_id" in entry:
                # A journal from before catalog views holds one view per image.
                recorded = CatalogViews.model_validate(entry.get("catalog_views") or {})
                if recorded != views:
                    raise IndexingError(
                        f"work dir {self.dir} holds {recorded.describe()} per image, this run asks for"
                        f" {views.describe()}: use another --out/--work-dir or delete it"
                    )
            if "part" in entry and (self.dir / PARTS / entry["part"]).exists():
                self.parts.append(entry["part"])
                self.done.update(entry["hashes"])
            if "reject" in entry:
                self.rejects[entry["reject"]] = entry

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add_part(self, hashes: list[str], vectors: np.ndarray) -> None:
        """``hashes[i]`` is the content hash of the image whose view gave ``vectors[i]`` (repeated per view)."""
        name = f"part-{len(self.parts):06d}-{os.getpid()}-{time.time_ns() % 10**9}.npz"
        tmp = self.dir / PARTS / (name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, vectors=vectors.astype(np.float32), hashes=np.array(hashes))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / PARTS / name)
        # The journal line comes after the part is complete: a journaled part is always whole.
        self._append({"part": name, "hashes": hashes})
        self.parts.append(name)
        self.done.update(hashes)

    def add_reject(self, sha: str, key: str, reason: str, message: str) -> None:
        entry = {"reject": sha, "key": key, "reason": reason, "message": message}
        self._append(entry)
        self.rejects[sha] = entry

    def vectors(self) -> dict[str, np.ndarray]:
        """Content hash → its view rows ``[V, D]``, in view order.

        An image is featurized once per content hash; the first ``V`` rows journaled for a hash are its rows.
        (Work dirs written before byte-identical images were recognized hold some hashes twice.)
        """
        grouped: dict[str, list[np.ndarray]] = {}
        for name in self.parts:
            try:
                with np.load(self.dir / PARTS / name, allow_pickle=False) as part:
                    rows = list(zip(part["hashes"].tolist(), part["vectors"], strict=True))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                raise unusable(self.dir, f"part {name} cannot be read ({type(exc).__name__}: {exc})") from exc
            for sha, vector in rows:
                kept = grouped.setdefault(sha, [])
                if len(kept) < self.views_count:
                    kept.append(vector)
        return {sha: np.stack(rows) for sha, rows in grouped.items()}


# --- the run --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    out: Path
    summary: dict[str, Any]


def run_index(
    options: IndexOptions,
    featurizer: Any = None,
    source: CatalogSource | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Index ``options.source`` into ``options.out``. ``on_batch`` is called after each journaled batch."""
    started = time.perf_counter()
    if featurizer is None:
        from model.featurizer import Featurizer

        featurizer = Featurizer(options.model, backend=options.backend, threads=options.threads)
    source = source or open_source(options.source)
    if options.batch_size < 1 or options.workers < 0:
        raise IndexingError("--batch-size must be >= 1 and --workers >= 0")
    listed = source.list()
    keys = [item.key for item in listed if options.shard is None or options.shard.owns(item.key)]
    rows = items_mod.read_item_rows(options.metadata) if options.metadata else []
    sidecar = getattr(featurizer, "sidecar", None)
    if sidecar is None:
        from model.sidecar import read_sidecar

        sidecar = read_sidecar(options.model)
    from model.retrieval.settings import default_catalog_views, manifest_section

    # Raises for a sidecar whose retrieval settings do not parse: better now than after featurizing.
    if options.views is None:
        options = replace(options, views=default_catalog_views(sidecar))
    retrieval = manifest_section(sidecar, options.resolved_views)
    with WorkDirLock(options.resolved_work_dir()):
        return _index_locked(options, featurizer, source, keys, rows, retrieval, on_batch, started)


def _index_locked(
    options: IndexOptions,
    featurizer: Any,
    source: CatalogSource,
    keys: list[str],
    rows: list[dict[str, Any]],
    retrieval: dict[str, Any],
    on_batch: Callable[[int], None] | None,
    started: float,
) -> RunResult:
    """The run proper, while this process holds the work dir's lock: clip-retrieval's reader → mapper → writer
    shape. Featurize what the journal lacks (reader + mapper, resumable), assemble the catalog from the journal
    and the metadata rows, write it."""
    log = get_logger(__name__)
    journal = Journal(options.resolved_work_dir(), featurizer.model_id, options.resolved_views)
    reused = len(journal.done)
    log_event(log, "index_start", source=source.uri, items=len(keys), shard=str(options.shard), resumed=reused)
    run = _featurize(options, featurizer, source, keys, journal, on_batch)
    catalog = _assemble(options, featurizer, source, keys, rows, journal, run)
    summary = _summary(options, featurizer, source, keys, catalog, run, reused, time.perf_counter() - started)
    views = options.resolved_views
    write_catalog(
        options.out,
        model_id=featurizer.model_id,
        dim=featurizer.dim,
        input_size=featurizer.input_size,
        ids=catalog.ids,
        vectors=catalog.matrix,
        records=catalog.records,
        index_kind=options.index_kind,
        index_params=options.index_params,
        summary=summary,
        report_lines=catalog.report,
        shard=str(options.shard) if options.shard else None,
        owners=None if views.is_single else np.repeat(np.arange(len(catalog.ids), dtype=np.int64), views.count),
        retrieval=retrieval,
        # A re-index of an adapted catalog keeps its head: new items are projected without retraining.
        **carried_head(options.out, featurizer.model_id),
    )
    log_event(log, "index_done", out=str(options.out), **{k: summary[k] for k in ("indexed", "rejected", "seconds")})
    return RunResult(options.out, summary)


@dataclass
class Featurized:
    """What the featurize stage learned about this run's keys (the vectors themselves are in the journal)."""

    hashes: dict[str, str] = field(default_factory=dict)
    """key → SHA-256 of its bytes, for every key that could be read."""
    read_errors: list[dict[str, Any]] = field(default_factory=list)
    featurized: int = 0
    featurize_s: float = 0.0


def _featurize(
    options: IndexOptions,
    featurizer: Any,
    source: CatalogSource,
    keys: list[str],
    journal: Journal,
    on_batch: Callable[[int], None] | None,
) -> Featurized:
    """Read, validate and prepare every key the journal has not seen (worker processes), featurize in batches of
    ``options.batch_size`` rows and journal each batch; byte-identical images are featurized once."""
    run = Featurized()
    pending_keys: list[str] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if not pending:
            return
        t0 = time.perf_counter()
        vectors = combine_rows(featurizer.featurize(np.concatenate(pending)), options.resolved_views)
        run.featurize_s += time.perf_counter() - t0
        rows_per_key = options.resolved_views.count
        journal.add_part([run.hashes[k] for k in pending_keys for _ in range(rows_per_key)], vectors)
        run.featurized += len(pending)
        pending.clear()
        pending_keys.clear()
        if on_batch is not None:
            on_batch(run.featurized)

    skip = frozenset(journal.done) | frozenset(journal.rejects)
    for key, sha, kind, payload in _prepared(
        options, source, featurizer.input_size, skip, keys, options.resolved_views
    ):
        if kind == "read_error":
            run.read_errors.append({"key": key, "reason": "read_error", "message": payload[1]})
            continue
        run.hashes[key] = sha
        if kind == "ok":
            if sha in journal.done or any(run.hashes[k] == sha for k in pending_keys):
                continue  # byte-identical to an image already featurized: the same rows serve both ids
            pending_keys.append(key)
            pending.append(payload)
            if sum(len(p) for p in pending) >= options.batch_size:
                flush()
        elif kind == "reject":
            journal.add_reject(sha, key, payload[0], payload[1])
    flush()
    return run


@dataclass
class Assembled:
    """The catalog to write, sorted by id, and every refusal with its reason."""

    ids: list[str]
    records: list[ItemRecord]
    matrix: np.ndarray
    report: list[dict[str, Any]]
    reasons: Counter[str]


def _assemble(
    options: IndexOptions,
    featurizer: Any,
    source: CatalogSource,
    keys: list[str],
    rows: list[dict[str, Any]],
    journal: Journal,
    run: Featurized,
) -> Assembled:
    """Join each key's journaled vectors with its metadata row; rejects, duplicate ids, unreadable files and
    metadata rows without an image go to the report."""
    by_file, by_id = items_mod.match_rows(rows)
    vectors_by_sha = journal.vectors()
    found: list[tuple[ItemRecord, np.ndarray]] = []
    report: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    seen_ids: dict[str, str] = {}
    for key in keys:
        content = run.hashes.get(key)
        if content is None:
            continue
        if content in journal.rejects:
            entry = journal.rejects[content]
            reasons[entry["reason"]] += 1
            report.append({"key": key, "sha256": content, "reason": entry["reason"], "message": entry["message"]})
            continue
        record = _record(
            key, items_mod.row_for(key, by_file, by_id), featurizer.model_id, source, options.image_base_url
        )
        if record.id in seen_ids:
            reasons["duplicate_id"] += 1
            message = f"id {record.id!r} is also {seen_ids[record.id]}"
            report.append({"key": key, "sha256": content, "reason": "duplicate_id", "message": message})
            continue
        seen_ids[record.id] = key
        rows_of = vectors_by_sha[content]
        if len(rows_of) != options.resolved_views.count:
            raise IndexingError(
                f"{key}: journal holds {len(rows_of)} view rows, expected {options.resolved_views.count}"
            )
        found.append((record, rows_of))
    for entry in run.read_errors:
        reasons["read_error"] += 1
        report.append(entry)
    if options.shard is None:
        matched = {id(row) for row in (items_mod.row_for(k, by_file, by_id) for k in keys) if row is not None}
        for row in rows:
            if id(row) not in matched:
                reasons["missing_image"] += 1
                report.append({"id": row["id"], "reason": "missing_image", "message": "metadata row has no image file"})
    found.sort(key=lambda pair: pair[0].id)
    matrix = np.concatenate([v for _, v in found]) if found else np.zeros((0, featurizer.dim), np.float32)
    return Assembled([r.id for r, _ in found], [r for r, _ in found], matrix, report, reasons)


def _summary(
    options: IndexOptions,
    featurizer: Any,
    source: CatalogSource,
    keys: list[str],
    catalog: Assembled,
    run: Featurized,
    reused: int,
    elapsed: float,
) -> dict[str, Any]:
    """The run's ``summary.json``: counts, refusals by reason, index size, time and throughput."""
    return {
        "model_id": featurizer.model_id,
        "source": source.uri,
        "shard": str(options.shard) if options.shard else None,
        "listed": len(keys),
        "indexed": len(catalog.ids),
        "rejected": sum(catalog.reasons.values()),
        "rejects_by_reason": dict(sorted(catalog.reasons.items())),
        "featurized_this_run": run.featurized,
        "reused_from_journal": reused,
        "index": {"kind": options.index_kind, "params": options.index_params},
        "catalog_views": options.resolved_views.describe(),
        "index_rows": int(catalog.matrix.shape[0]),
        "index_mb": round(catalog.matrix.nbytes / 1e6, 3),
        "seconds": round(elapsed, 3),
        "throughput": {
            "images_per_s": round(run.featurized / elapsed, 2) if elapsed > 0 else None,
            "featurize_images_per_s": round(run.featurized / run.featurize_s, 2) if run.featurize_s > 0 else None,
        },
    }


def _prepared(
    options: IndexOptions,
    source: CatalogSource,
    input_size: int,
    skip: frozenset[str],
    keys: list[str],
    views: CatalogViews = SINGLE_VIEW,
) -> Iterator[tuple[str, str, str, Any]]:
    from tqdm import tqdm

    bar = tqdm(total=len(keys), unit="img", desc="indexing", disable=not options.progress, mininterval=0.5)
    if options.workers == 0:
        # In-process (debugging, or a client object that cannot cross a process boundary).
        _worker_init(source, input_size, skip, views=views)
        for key in keys:
            bar.update(1)
            yield _worker_prepare(key)
        bar.close()
        return
    # spawn, not fork: the parent already runs onnxruntime threads, which fork does not copy safely.
    ctx = multiprocessing.get_context("spawn")
    initargs = (source, input_size, skip, WORKER_NICE, views)
    with ctx.Pool(options.workers, initializer=_worker_init, initargs=initargs) as pool:
        # Bounded look-ahead: imap pulls lazily, so workers run at most a few chunks ahead of featurization.
        for result in pool.imap_unordered(_worker_prepare, keys, chunksize=4):
            bar.update(1)
            yield result
    bar.close()


def _record(
    key: str, row: dict[str, Any] | None, model_id: str, source: CatalogSource, image_base_url: str | None
) -> ItemRecord:
    default_url = image_base_url.rstrip("/") + "/" + key if image_base_url else source.url_for(key)
    if row is None:
        return ItemRecord(
            id=items_mod.stem_of(key), model_id=model_id, title=items_mod.title_from_key(key), image_url=default_url
        )
    extra = {k: v for k, v in row.items() if k not in RESERVED and k not in items_mod.FILE_KEYS}
    return ItemRecord(
        id=row["id"],
        model_id=model_id,
        title=str(row.get("title") or items_mod.title_from_key(key)),
        image_url=str(row.get("image_url") or default_url),
        extra=extra,
    )
