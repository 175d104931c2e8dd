"""Compact indexes side by side: what fits millions of items into one search function.

For each vector set (``bench.vectors``: the shipped model's vectors of real product pictures, and spectral
synthetic vectors at 100k — and 1M with ``BENCH_INDEX_1M=1``), every candidate kind of
``cloud_lambda.index`` is built once (cached under ``.cache/bench/indexes/``, with its build time), then
measured:

* recall@5 against exact float32 search (the same 1,000 queries; ground truth cached);
* search p50 / p99, one query at a time on one OpenMP thread (as ``SearchService`` runs it);
* bytes per item: the index file, and the RSS growth of a fresh process loading the catalog folder
  (``load_catalog``: index + ids.json) — the figure a Lambda's memory size has to hold;
* cold start: ``load_catalog`` from a local file (a fresh process; the file is in the page cache), and
  from S3 (moto, in this process: boto3's download path and our loader, not the network).

``python -m bench index_compact`` (real 20k + spectral 100k), ``--quick`` (spectral 20k),
``BENCH_INDEX_1M=1`` adds 1M (an hour or more on 2 shared cores: run it with ``nice``), ``BENCH_INDEX_SIZES=N,N``
sets the spectral sizes, ``BENCH_INDEX_SKIP_REAL=1`` skips the real set, ``BENCH_INDEX_REAL=N`` sets its size,
``BENCH_INDEX_ONLY=name,name`` measures only those candidates, ``BENCH_INDEX_THREADS=N`` builds on N threads.
``BENCH_INDEX_HEAD=1`` measures in an adapted catalog's index space instead: every set projected through a
trained projection head (``bench.vectors.bench_head``: ``BENCH_HEAD=path/head.npz``), the catalog folders
written as ``catalog adapt`` leaves them (head.npz + the manifest's adaptation section), ground truth exact in
the head's space — what the adapted search computes exactly.
Each row is printed as soon as it is measured and appended to ``.cache/bench/index_compact.jsonl`` with the
load average at the time (and the head's sha256).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.search import search_latencies
from bench.table import print_table
from bench.vectors import CACHE, Spectrum, VectorSet, bench_head, head_set, real_set, real_view_pairs, spectral_set
from model.retrieval.head import ProjectionHead

K = 5
QUERIES = 1000
ID_WIDTH = 12
"""Item ids like ``sku-00001234``: the ids' share of RSS grows with their length."""
S3_MAX_BYTES = int(os.environ.get("BENCH_INDEX_S3_MAX_MB", "2500")) * 1_000_000
"""Folders above this skip the moto S3 load (moto holds objects in this process: ~70 s per 540 MB here)."""
RESULTS = CACHE / "index_compact.jsonl"
BUILD_THREADS = int(os.environ.get("BENCH_INDEX_THREADS", "1"))
"""faiss threads while building (search is measured on one); 2 halves a 1M build on an idle 2-core machine."""
HEADERS = [
    *("vectors", "index", "search", "recall@5 vs exact", "p50 ms", "p99 ms", "p50 CPU ms", "file B/item", "RSS B/item"),
    *("build s", "load s (file)", "load s (S3 moto)", "process RSS MB"),
]


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str
    params: dict[str, int]
    search: tuple[dict[str, int], ...] = ({},)
    """Search-time settings measured on the same built index (efSearch, nprobe, rerank)."""
    max_rows: int | None = None
    """Skip above this size (float32 HNSW at 1M needs 5+ GB here while building)."""

    def key(self) -> str:
        """The built index's cache key: search-only settings left out, so every search setting shares one build."""
        built_with = {k: v for k, v in self.params.items() if k not in SEARCH_ONLY}
        return "-".join([self.kind, *(f"{k}{v}" for k, v in sorted(built_with.items()))])


SEARCH_ONLY = ("ef_search", "nprobe")
HNSW = {"M": 32, "ef_construction": 80}
HNSW16 = {"M": 16, "ef_construction": 80}
HNSW48 = {"M": 48, "ef_construction": 80}
EF: tuple[dict[str, int], ...] = tuple(
    {"ef_search": int(ef)} for ef in os.environ.get("BENCH_INDEX_EF", "64,128,256,384,512").split(",")
)
"""The HNSW kinds' ``ef_search`` rows (``BENCH_INDEX_EF=256,512``: only those)."""
CANDIDATES = [
    Candidate("hnsw (float32, today)", "hnsw", {**HNSW, "ef_search": 64}, ({}, {"ef_search": 128})),
    Candidate("hnsw-fp16", "hnsw-fp16", {**HNSW, "ef_search": 64}, EF),
    Candidate("hnsw-sq8", "hnsw-sq8", {**HNSW, "ef_search": 64}, EF),
    Candidate("hnsw-fp16 M=16", "hnsw-fp16", {**HNSW16, "ef_search": 64}, EF),
    Candidate("hnsw-sq8 M=16", "hnsw-sq8", {**HNSW16, "ef_search": 64}, EF),
    Candidate("hnsw-fp16 M=48", "hnsw-fp16", {**HNSW48, "ef_search": 64}, EF, max_rows=1_000_000),
    Candidate("hnsw-fp16 efC=160", "hnsw-fp16", {**HNSW, "ef_construction": 160, "ef_search": 64}, EF),
    Candidate("pca768 + hnsw-sq8", "hnsw-sq8", {**HNSW, "ef_search": 64, "pca": 768}, ({}, {"ef_search": 128})),
    Candidate("pca384 + hnsw-sq8", "hnsw-sq8", {**HNSW, "ef_search": 64, "pca": 384}, ({}, {"ef_search": 128})),
    Candidate("pca256 + hnsw-sq8", "hnsw-sq8", {**HNSW, "ef_search": 64, "pca": 256}),
    Candidate(
        "ivfpq 64 B + re-rank sq8",
        "ivfpq",
        {"pq_m": 64, "nprobe": 32, "rerank": 8},
        ({}, {"nprobe": 64, "rerank": 16}),
    ),
]


@dataclass
class Built:
    folder: Path
    """A catalog folder (manifest, ids.json, the index file) as ``catalog index`` writes it."""
    build_s: float
    file_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


# --- ground truth and the built indexes (cached) ---------------------------------------------------------
def ground_truth(data: VectorSet, tag: str) -> np.ndarray:
    path = CACHE / "truth" / f"{tag}.npy"
    if path.exists():
        return np.load(path)
    queries = data.queries.astype(np.float32)
    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.full((len(queries), K), -1, np.int64)
    for start in range(0, data.base.shape[0], 50_000):
        block = np.asarray(data.base[start : start + 50_000], dtype=np.float32)
        sims = queries @ block.T
        top = np.argpartition(-sims, K - 1, axis=1)[:, :K]
        scores = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        ids = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, best_i)
    return best_i


def built(data: VectorSet, tag: str, candidate: Candidate) -> Built:
    """The candidate's catalog folder for ``data`` (built now, or reused from the cache)."""
    from cloud_lambda.index import create_index

    folder = CACHE / "indexes" / tag / candidate.key()
    record = folder / "build.json"
    if not record.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        import faiss

        index = create_index(candidate.kind, data.base.shape[1], **candidate.params)
        faiss.omp_set_num_threads(BUILD_THREADS)
        started = time.perf_counter()
        index.build(data.base)
        build_s = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        index.save(folder)
        _write_catalog_files(folder, index, data.base.shape, data.head)
        record.write_text(json.dumps({"build_s": build_s, "threads": BUILD_THREADS}))
        del index
    file_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("index."))
    return Built(folder, json.loads(record.read_text())["build_s"], file_bytes)


def _write_catalog_files(folder: Path, index: Any, shape: tuple[int, ...], head: ProjectionHead | None) -> None:
    """ids.json and the manifest as ``catalog index`` writes them; with ``head``, as ``catalog adapt`` leaves an
    adapted catalog (head.npz beside the index, the manifest's adaptation section): what the search loads."""
    from cloud_lambda.catalog.layout import IDS, MANIFEST, IndexSpec, Manifest

    (folder / IDS).write_text(json.dumps([f"sku-{i:0{ID_WIDTH - 4}d}" for i in range(shape[0])]))
    adaptation = None
    if head is not None:
        head.save(folder)
        adaptation = {"kind": "head", "head_sha256": head.sha256, "in_dim": head.in_dim, "out_dim": head.out_dim}
    manifest = Manifest(
        model_id="bench-spectral",
        dim=shape[1] if head is None else head.in_dim,
        count=shape[0],
        index=IndexSpec(**index.describe()),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        adaptation=adaptation,
    )
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2))


# --- measurements ----------------------------------------------------------------------------------------
def probe(folder: str) -> None:
    """(Child process) RSS before and after ``load_catalog(folder)``, and its seconds, as one JSON line."""
    import cloud_lambda.search.service  # noqa: F401 - the search function's imports are its baseline
    from cloud_lambda.catalog.layout import load_catalog

    before = _rss_kb()
    started = time.perf_counter()
    catalog = load_catalog(folder)
    load_s = time.perf_counter() - started
    print(
        json.dumps({"rss_before_kb": before, "rss_after_kb": _rss_kb(), "load_s": load_s, "rows": catalog.index.count})
    )


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_load(folder: Path) -> dict[str, Any]:
    code = f"from bench.index_compact import probe; probe({str(folder)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_s3_load(folder: Path) -> float | None:
    """Seconds to list, download (only what a search needs) and load the folder from S3 (moto)."""
    if sum(p.stat().st_size for p in folder.iterdir()) > S3_MAX_BYTES:
        return None
    import boto3
    from moto import mock_aws

    from cloud_lambda.catalog.layout import load_catalog
    from cloud_lambda.catalog.roots import S3Root
    from cloud_lambda.catalog.sources import upload_folder

    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with mock_aws(), tempfile.TemporaryDirectory() as tmp:
            client = boto3.client("s3")
            client.create_bucket(Bucket="bench")
            staged = Path(tmp) / "bench-spectral"
            staged.mkdir()
            for path in folder.iterdir():
                if path.name != "build.json":
                    os.link(path, staged / path.name)
            upload_folder(staged, "s3://bench/index/bench-spectral", client)
            shutil.rmtree(staged)
            tempfile.tempdir, previous = tmp, tempfile.tempdir
            try:
                started = time.perf_counter()
                root = S3Root("s3://bench/index", client)
                load_catalog(root.local_folder(root.model_ids()[0]))
                return time.perf_counter() - started
            finally:
                tempfile.tempdir = previous
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def search_rows(index: Any, data: VectorSet, truth: np.ndarray, settings: dict[str, int]) -> tuple[float, ...]:
    """(recall@5, p50 ms, p99 ms, p50 CPU ms) of ``index`` with the search-time ``settings`` applied."""
    for name, value in settings.items():
        index.set_search_param(name, value)
    queries = data.queries.astype(np.float32)
    for q in queries[:20]:
        index.search(q[None], K)
    times, found = search_latencies(index, queries)
    cpu_times, _ = search_latencies(index, queries, time.thread_time)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    return recall, *(float(np.percentile(times, q)) for q in (50, 99)), float(np.percentile(cpu_times, 50))


# --- the table -------------------------------------------------------------------------------------------
def bench_set(data: VectorSet, tag: str, rows: list[list[Any]]) -> None:
    import faiss

    from cloud_lambda.index import load_index

    faiss.omp_set_num_threads(1)
    truth = ground_truth(data, tag)
    n = data.base.shape[0]
    only = [name.strip() for name in os.environ.get("BENCH_INDEX_ONLY", "").split(",") if name.strip()]
    for candidate in CANDIDATES:
        if candidate.max_rows is not None and n > candidate.max_rows:
            continue
        if candidate.params.get("pca", 0) >= data.base.shape[1]:
            continue  # no projection to as many dimensions as the vectors have
        if only and candidate.name not in only and candidate.key() not in only:
            continue
        made = built(data, tag, candidate)
        load = measure_load(made.folder)
        s3_s = measure_s3_load(made.folder)
        rss_per_item = (load["rss_after_kb"] - load["rss_before_kb"]) * 1024 / n
        index = load_index(made.folder, candidate.kind, data.base.shape[1], candidate.params)
        for settings in candidate.search:
            recall, p50, p99, p50_cpu = search_rows(index, data, truth, settings)
            label = ", ".join(f"{k}={v}" for k, v in {**_search_defaults(candidate), **settings}.items())
            s3 = "-" if s3_s is None else round(s3_s, 2)
            process_mb = load["rss_after_kb"] / 1024
            measured = [
                recall,
                p50,
                p99,
                p50_cpu,
                made.file_bytes / n,
                rss_per_item,
                made.build_s,
                load["load_s"],
                s3,
                process_mb,
            ]
            rows.append([data.name, candidate.name, label, *measured])
            _record(rows[-1], data)
        del index


def _record(row: list[Any], data: VectorSet) -> None:
    """Each row as soon as it is measured: on stdout (a 1M run takes an hour) and in ``RESULTS`` (JSON lines,
    with the load average and, for head-space sets, the head's sha256)."""
    print("  " + " | ".join(str(round(c, 4) if isinstance(c, float) else c) for c in row), flush=True)
    context = {"when": time.strftime("%Y-%m-%d %H:%M"), "loadavg": os.getloadavg()}
    if data.head is not None:
        context["head_sha256"] = data.head.sha256
    with RESULTS.open("a") as out:
        out.write(json.dumps({**context, **dict(zip(HEADERS, row, strict=True))}) + "\n")


def _search_defaults(candidate: Candidate) -> dict[str, int]:
    return {k: v for k, v in candidate.params.items() if k in ("ef_search", "nprobe", "rerank")}


def vector_sets(quick: bool) -> list[tuple[VectorSet, str]]:
    real_items = int(os.environ.get("BENCH_INDEX_REAL", "20000"))
    items, residuals = real_view_pairs(real_items, QUERIES)
    spectrum = Spectrum.cached(items, residuals)
    sizes = [int(n) for n in os.environ.get("BENCH_INDEX_SIZES", "20000" if quick else "100000").split(",") if n]
    if os.environ.get("BENCH_INDEX_1M") == "1":
        sizes.append(1_000_000)
    with_real = not quick and os.environ.get("BENCH_INDEX_SKIP_REAL") != "1"
    if os.environ.get("BENCH_INDEX_HEAD") == "1":
        return _head_sets(real_items, spectrum, sizes, with_real)
    sets = [(real_set(real_items, QUERIES), f"real-{real_items}")] if with_real else []
    return sets + [(spectral_set(n, spectrum, QUERIES), f"spectral-{n}") for n in sizes]


def _head_sets(real_items: int, spectrum: Spectrum, sizes: list[int], with_real: bool) -> list[tuple[VectorSet, str]]:
    """The sets in an adapted catalog's index space: projected through the head ``bench_head`` finds."""
    head, source = bench_head()
    print(f"head: {head.in_dim}->{head.out_dim}, sha256 {head.sha256}, from {source}", flush=True)
    tag = f"head{head.sha256[:10]}"
    sets = []
    if with_real:
        real = real_set(real_items, QUERIES)
        projected = VectorSet(
            f"real {real_items:,} → head {head.out_dim}", head.project(real.base), head.project(real.queries), head
        )
        sets.append((projected, f"real-{real_items}-{tag}"))
    return sets + [(head_set(n, spectrum, head, QUERIES), f"spectral-{n}-{tag}") for n in sizes]


def run(quick: bool) -> None:
    rows: list[list[Any]] = []
    sets = vector_sets(quick)
    for data, tag in sets:
        bench_set(data, tag, rows)
    dims = "/".join(sorted({f"{data.base.shape[1]}-d" for data, _ in sets}))
    print_table(
        f"Compact indexes: top-{K}, {dims}, single query on 1 thread (the search function's setting)",
        HEADERS,
        rows,
        "Targets for the large-catalog default: recall@5 >= 0.98 at 1M, p50 <= 2 ms, 2M items in a 2 GB function."
        " RSS B/item: growth of a fresh process's RSS when load_catalog reads the folder (index + ids), / items."
        + ("" if os.environ.get("BENCH_INDEX_1M") == "1" else " 1M rows: BENCH_INDEX_1M=1."),
    )


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
