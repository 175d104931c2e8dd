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
``BENCH_REGION_EFS=48,56,64`` (default: the ``ef_regions`` auto chose, 5/6 and 4/3 of it),
``BENCH_REGION_SPACES=adapted`` (or ``full``; default both), ``BENCH_REGION_GRAPHS=32:96,0:0`` (other
hnsw-fp16 graphs, ``M:ef_regions``, measured beside auto's index: the previous default, candidates; ``0:0``
exact search),
``BENCH_REGION_HELDOUT=1`` (messages held out from the choices: around other items, with other region noise),
``BENCH_REGION_VECTORS=isotropic`` (``bench.retrieval``'s clustered isotropic vectors through a random orthonormal
map, adapted space only, instead of the spectral set). Every message goes through every row of its catalog in
a fresh random order, so the load and the caches the rows evict from each other fall on all alike. A size auto
searches exactly gets one row. Needs the real vectors of ``bench.vectors.real_view_pairs`` (cached after the
first run) and, for the head space, a head (``BENCH_HEAD`` or a held-up evaluation's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.table import print_table
from bench.vectors import Spectrum, VectorSet, bench_head, head_set, real_view_pairs, spectral_set
from model.retrieval.head import ProjectionHead

K = 5
REGIONS = 4
MESSAGES = 400
HEADERS = ["catalog", "index", "ef_regions", "recall@5 vs exact fold", "top-1 agrees", "distances/message"]
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


@dataclass
class Variant:
    """One way to search the catalog: an index (auto's, exact, or a graph to compare) at one ``ef_regions``."""

    label: str
    index: Any
    ef: int
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    distances: list[int] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    top1: list[bool] = field(default_factory=list)

    def row(self, name: str) -> list[object]:
        return [
            name,
            self.label,
            self.ef,
            float(np.mean(self.recall)),
            float(np.mean(self.top1)),
            float(np.mean(self.distances)),
            float(np.percentile(self.times, 50)),
            float(np.percentile(self.times, 99)),
            float(np.percentile(self.cpu, 50)),
        ]


def measure(variants: list[Variant], msgs: np.ndarray, truth: list[list[int]], head: ProjectionHead | None) -> None:
    """Every message through every variant, in a fresh random order per message (the shared machine's load and
    the caches the variants evict from each other then fall on all alike); ``head``: each region projected
    first, inside the timed call, as the service does."""
    import faiss

    from cloud_lambda.index.fold import search_items

    stats = faiss.cvar.hnsw_stats  # type: ignore[attr-defined]
    owners = np.arange(variants[0].index.count)
    order = np.random.default_rng(0)
    for regions, want in zip(msgs, truth, strict=True):
        for variant in (variants[i] for i in order.permutation(len(variants))):
            if variant.ef:
                variant.index.set_search_param("ef_regions", variant.ef)
            stats.reset()
            started, started_cpu = time.perf_counter(), time.process_time()
            _, got = search_items(variant.index, owners, 1, regions, K, head)
            variant.times.append((time.perf_counter() - started) * 1000)
            variant.cpu.append((time.process_time() - started_cpu) * 1000)
            variant.distances.append(int(stats.ndis))
            variant.recall.append(len(set(got.tolist()) & set(want)) / K)
            variant.top1.append(int(got[0]) == int(want[0]))


def default_efs(chosen: int) -> list[int]:
    """The ``ef_regions`` auto chose and a narrower and a wider walk around it."""
    return sorted({chosen * 5 // 6, chosen, chosen * 4 // 3})


def _build(kind: str, params: dict[str, Any], base: np.ndarray, name: str) -> Any:
    from cloud_lambda.index import create_index

    started = time.perf_counter()
    index = create_index(kind, base.shape[1], **params)
    index.build(base)
    print(f"{name}: {kind} {params} built in {time.perf_counter() - started:.0f} s", flush=True)
    return index


def run_space(
    name: str,
    base: np.ndarray,
    msgs: np.ndarray,
    efs: list[int] | None,
    head: ProjectionHead | None = None,
    graphs: Sequence[tuple[int, int]] = (),
) -> list[list[object]]:
    """Rows for one catalog: ``msgs`` in the model's space; ``head``: the catalog's (``base`` is projected);
    ``graphs``: (M, ef_regions) of other hnsw-fp16 graphs measured alongside auto's index."""
    from cloud_lambda.index.choice import choose
    from cloud_lambda.search.threads import limit_compute_threads

    limit_compute_threads()  # one faiss and BLAS thread, as the search service runs
    rows, dim = base.shape
    kind, params = choose(rows, dim)
    projected = msgs if head is None else head.project(msgs.reshape(-1, msgs.shape[2])).reshape(*msgs.shape[:2], -1)
    truth = exact_folds(base, projected)
    index = _build(kind, params, base, name)
    described = f"{kind} M {params['M']} ef_search {params['ef_search']} (auto)" if "M" in params else "exact (auto)"
    chosen = int(params.get("ef_regions") or params.get("ef_search") or 0)
    variants = [Variant(described, index, ef) for ef in ([0] if kind == "exact" else efs or default_efs(chosen))]
    for m, ef in graphs:
        if not m:  # 0:0, exact search (auto's choice below 20k rows until 2026-11-30)
            variants.append(Variant("exact", _build("exact", {}, base, name), 0))
            continue
        graph = _build("hnsw-fp16", {"M": m, "ef_construction": 80, "ef_search": 128}, base, name)
        variants.append(Variant(f"hnsw-fp16 M {m}", graph, ef))
    measure(variants, msgs, truth, head)
    out = [variant.row(name) for variant in variants]
    for row in out:
        print("  " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row), flush=True)
    return out


def isotropic(n: int, heldout: bool) -> tuple[np.ndarray, np.ndarray, ProjectionHead]:
    """(adapted catalog ``[n, 256]``, messages ``[MESSAGES, REGIONS, 1280]``, head): ``bench.retrieval``'s shapes —
    clustered isotropic unit vectors through a random orthonormal 1280 → 256 map."""
    from bench.retrieval import DIM, _head
    from bench.search import clustered_catalog, queries_near

    head = _head(256)
    raw = clustered_catalog(n, DIM, seed=5)
    msgs = queries_near(raw, MESSAGES * REGIONS, seed=7 if heldout else 6).reshape(MESSAGES, REGIONS, DIM)
    return head.project(raw), msgs, head


def run(quick: bool) -> None:
    sizes = [int(n) for n in os.environ.get("BENCH_REGION_SIZES", "20000" if quick else "100000").split(",")]
    given = os.environ.get("BENCH_REGION_EFS")
    efs = [int(e) for e in given.split(",")] if given else None
    spaces = os.environ.get("BENCH_REGION_SPACES", "full,adapted").split(",")
    graphs = [_graph(g) for g in os.environ.get("BENCH_REGION_GRAPHS", "").split(",") if g]
    heldout = os.environ.get("BENCH_REGION_HELDOUT") == "1"
    vectors = os.environ.get("BENCH_REGION_VECTORS", "spectral")
    started_load = os.getloadavg()[0]
    rows: list[list[object]] = []
    for n in sizes:
        if vectors == "isotropic":
            base, msgs, head = isotropic(n, heldout)
            rows += run_space(f"{n:,} items, isotropic, adapted 256-d", base, msgs, efs, head, graphs)
            continue
        spectrum, head = _spectral_inputs()
        # Held out: messages around other items (picked from 1,000) with other region noise.
        queries = 1000 if heldout else MESSAGES
        data = spectral_set(n, spectrum, queries)
        msgs = messages(data, spectrum, seed=12 if heldout else 11)[:MESSAGES]
        if "full" in spaces:
            rows += run_space(f"{n:,} items, 1280-d", np.asarray(data.base), msgs, efs, None, graphs)
        if "adapted" in spaces:
            adapted = np.asarray(head_set(n, spectrum, head, queries).base)
            rows += run_space(f"{n:,} items, adapted {head.out_dim}-d", adapted, msgs, efs, head, graphs)
    print_table(
        "Region messages: per-region efSearch (ef_regions) against the exact fold",
        HEADERS,
        rows,
        f"{MESSAGES} {'held-out ' if heldout else ''}messages of {REGIONS} regions, {vectors} vectors; every message"
        " through every row in random order; one OpenMP thread; distances are faiss's counters (load-proof)."
        f" ef_regions 0: exact search. Load average {started_load:.1f} at the start, {os.getloadavg()[0]:.1f} now,"
        f" on {os.cpu_count()} cores (shared machine).",
    )


def _graph(text: str) -> tuple[int, int]:
    """``M:ef_regions`` (``BENCH_REGION_GRAPHS``)."""
    m, ef = text.split(":")
    return int(m), int(ef)


def _spectral_inputs() -> tuple[Spectrum, ProjectionHead]:
    items, residuals = real_view_pairs(20_000)
    head, source = bench_head()
    print(f"head {head.in_dim}->{head.out_dim} sha256 {head.sha256[:12]} from {source}", flush=True)
    return Spectrum.cached(items, residuals), head
