"""How wide each region's graph walk must be: message recall against the exact fold, and what it costs.

A version-2 message carries several region vectors of one frame; the search walks the HNSW graph once per
region and keeps each item's best region (:func:`cloud_lambda.index.fold.search_items`). This section measures,
for the index ``--index auto`` picks at the size (``cloud_lambda.index.choice``) and each per-region efSearch
(``ef_regions``):

* message recall@5 and top-1 agreement against the exact fold (every region scored against every item);
* distance computations per message (faiss's counters: a cost figure the shared machine's load cannot move);
* search p50 / p99 per message, one OpenMP thread as the search service runs (these the load does move), and
  the p50 of the process's CPU time per message (preemption on a loaded machine does not count there); in the
  adapted space the projection of the message's regions through the head is part of the time, as in the
  service (before 2026-11-30 16:00 it was not: the messages were projected ahead).

Messages: spectral queries (``bench.vectors``: camera views and new family members of catalog items), each
made into 4 regions by adding the real camera views' residual spectrum again per region (a window sees another
part of the object and of the room). Two spaces: the model's 1280-d vectors, and an adapted catalog's (the same
vectors through the head ``bench.vectors.bench_head`` finds).

``python -m bench region_search`` (100k items, 400 messages), ``BENCH_REGION_SIZES=N,N``,
``BENCH_REGION_EFS=40,48,64`` (default: the ``ef_regions`` auto chose, 5/6 and 4/3 of it),
``BENCH_REGION_SPACES=adapted`` (or ``full``; default both). A size auto searches exactly gets one row. Needs the
real vectors of ``bench.vectors.real_view_pairs`` (cached after the first run) and, for the head space, a head
(``BENCH_HEAD`` or a held-up evaluation's).
"""

from __future__ import annotations

import os
import time

import numpy as np

from bench.table import print_table
from bench.vectors import Spectrum, VectorSet, bench_head, head_set, real_view_pairs, spectral_set
from model.retrieval.head import ProjectionHead

K = 5
REGIONS = 4
MESSAGES = 400
HEADERS = ["catalog", "index (auto)", "ef_regions", "recall@5 vs exact fold", "top-1 agrees", "distances/message"]
HEADERS += ["p50 ms", "p99 ms", "p50 CPU ms"]
REGION_NOISE = 0.7
"""Each region's extra residual, in units of one camera view's residual spectrum."""


def messages(data: VectorSet, spectrum: Spectrum, seed: int = 11) -> np.ndarray:
    """``[MESSAGES, REGIONS, D]`` unit region vectors around the set's queries (full-dimension space)."""
    rng = np.random.default_rng(seed)
    queries = data.queries[:MESSAGES]
    dim = queries.shape[1]
    noise = rng.standard_normal((len(queries) * REGIONS, dim), dtype=np.float32) @ spectrum.view
    rows = np.repeat(queries, REGIONS, axis=0) + REGION_NOISE * noise
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.reshape(len(queries), REGIONS, dim).astype(np.float32)


def exact_folds(base: np.ndarray, msgs: np.ndarray) -> list[list[int]]:
    """Each message's top-``K`` items by best region, scored against every item (block by block)."""
    best = np.full((len(msgs), base.shape[0]), -np.inf, np.float32)
    flat = msgs.reshape(-1, msgs.shape[2])
    for start in range(0, base.shape[0], 50_000):
        block = np.asarray(base[start : start + 50_000], np.float32)
        sims = (flat @ block.T).reshape(len(msgs), REGIONS, -1).max(axis=1)
        best[:, start : start + len(block)] = sims
    return [list(np.argsort(-row, kind="stable")[:K]) for row in best]


def measure(
    index: object, msgs: np.ndarray, truth: list[list[int]], ef: int, head: ProjectionHead | None
) -> list[object]:
    """One row: ``msgs`` searched as the service searches them (``head``: each region projected first, timed)."""
    import faiss

    from cloud_lambda.index.fold import search_items

    if ef:
        index.set_search_param("ef_regions", ef)  # type: ignore[attr-defined]
    stats = faiss.cvar.hnsw_stats  # type: ignore[attr-defined]
    owners = np.arange(index.count)  # type: ignore[attr-defined]
    recall, top1, times, cpu, distances = [], [], [], [], []
    for regions, want in zip(msgs, truth, strict=True):
        stats.reset()
        started, started_cpu = time.perf_counter(), time.process_time()
        _, got = search_items(index, owners, 1, regions, K, head)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        distances.append(stats.ndis)
        recall.append(len(set(got.tolist()) & set(want)) / K)
        top1.append(int(got[0]) == int(want[0]))
    return [
        ef,
        float(np.mean(recall)),
        float(np.mean(top1)),
        float(np.mean(distances)),
        float(np.percentile(times, 50)),
        float(np.percentile(times, 99)),
        float(np.percentile(cpu, 50)),
    ]


def default_efs(chosen: int) -> list[int]:
    """The ``ef_regions`` auto chose and a narrower and a wider walk around it."""
    return sorted({chosen * 5 // 6, chosen, chosen * 4 // 3})


def run_space(
    name: str, base: np.ndarray, msgs: np.ndarray, efs: list[int] | None, head: ProjectionHead | None = None
) -> list[list[object]]:
    """Rows for one catalog: ``msgs`` in the model's space; ``head``: the catalog's (``base`` is projected)."""
    from cloud_lambda.index import create_index
    from cloud_lambda.index.choice import choose
    from cloud_lambda.search.threads import limit_compute_threads

    limit_compute_threads()  # one faiss and BLAS thread, as the search service runs
    rows, dim = base.shape
    kind, params = choose(rows, dim)
    projected = msgs if head is None else head.project(msgs.reshape(-1, msgs.shape[2])).reshape(*msgs.shape[:2], -1)
    truth = exact_folds(base, projected)
    started = time.perf_counter()
    index = create_index(kind, dim, **params)
    index.build(base)
    print(f"{name}: {kind} {params} built in {time.perf_counter() - started:.0f} s", flush=True)
    out = []
    if kind == "exact":
        efs = [0]  # no walk to widen
    described = f"{kind} M {params['M']} ef_search {params['ef_search']}" if "M" in params else kind
    for ef in efs or default_efs(int(params.get("ef_regions") or params["ef_search"])):
        row = [name, described, *measure(index, msgs, truth, ef, head)]
        print("  " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row), flush=True)
        out.append(row)
    return out


def run(quick: bool) -> None:
    sizes = [int(n) for n in os.environ.get("BENCH_REGION_SIZES", "20000" if quick else "100000").split(",")]
    given = os.environ.get("BENCH_REGION_EFS")
    efs = [int(e) for e in given.split(",")] if given else None
    spaces = os.environ.get("BENCH_REGION_SPACES", "full,adapted").split(",")
    started_load = os.getloadavg()[0]
    items, residuals = real_view_pairs(20_000)
    spectrum = Spectrum.cached(items, residuals)
    head, source = bench_head()
    print(f"head {head.in_dim}->{head.out_dim} sha256 {head.sha256[:12]} from {source}", flush=True)
    rows: list[list[object]] = []
    for n in sizes:
        data = spectral_set(n, spectrum, MESSAGES)
        msgs = messages(data, spectrum)
        adapted = head_set(n, spectrum, head, MESSAGES).base
        if "full" in spaces:
            rows += run_space(f"{n:,} items, 1280-d", np.asarray(data.base), msgs, efs)
        if "adapted" in spaces:
            rows += run_space(f"{n:,} items, adapted {head.out_dim}-d", np.asarray(adapted), msgs, efs, head)
    print_table(
        "Region messages: per-region efSearch (ef_regions) against the exact fold",
        HEADERS,
        rows,
        f"{MESSAGES} messages of {REGIONS} regions; one OpenMP thread; distances are faiss's counters (load-proof)."
        f" ef_regions 0: exact search. Load average {started_load:.1f} at the start, {os.getloadavg()[0]:.1f} now,"
        f" on {os.cpu_count()} cores (shared machine).",
    )
