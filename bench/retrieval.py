"""What each retrieval option costs outside the device: bytes per wire message and search time per message.

For every option of the held-up table (docs/match-quality.md): the encoded feature message (the real codec,
realistic ids and timings) and the search of one message through the real cloud code
(:func:`cloud_lambda.index.fold.search_items`: projection head, one batched index search of all region
vectors, per-item max fold) at 10k and 100k catalog items, exact (numpy) and the index ``--index auto`` builds
at that size (``cloud_lambda.index.choice``: region vectors walk with its ``ef_regions``). Catalog vectors are
synthetic clustered unit vectors (bench.search); cost depends on shapes, not on content.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from bench.search import clustered_catalog, queries_near
from bench.table import print_table
from model.retrieval.head import ProjectionHead

DIM = 1280
K = 5


@dataclass(frozen=True)
class Shape:
    name: str
    regions: int
    views: int = 1
    head_dim: int | None = None
    dtype: str = "int8"


SHAPES = (
    Shape("1 vector (baseline, previous default)", 1, dtype="float16"),
    Shape("4 region vectors", 4),
    Shape("4 region vectors + head 1280→256", 4, head_dim=256),
    Shape("1 vector + head 1280→256", 1, head_dim=256, dtype="float16"),
    Shape("1 vector, 3 catalog views", 1, views=3, dtype="float16"),
)


def message_bytes(shape: Shape) -> int:
    from model.contracts.wire import FeatureMessage, encode

    rows = np.abs(np.random.default_rng(0).standard_normal((shape.regions, DIM))).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    message = FeatureMessage(
        "camera-entrance-01",
        1_796_020_415_918,
        1_796_020_415.118,
        "efficientnet-lite0-int8-63a0d42c",
        rows[0],
        1280,
        720,
        {"prepare": 1.1, "featurize": 19.8},
        regions=rows if shape.regions > 1 else None,
    )
    return len(encode(message))


def _head(dim_out: int) -> ProjectionHead:
    rng = np.random.default_rng(1)
    weight, _ = np.linalg.qr(rng.standard_normal((DIM, dim_out)))
    return ProjectionHead(weight.astype(np.float32), np.zeros(DIM, np.float32))  # a random orthonormal map


_INDEXES: dict[tuple[int | None, int, int, str], object] = {}
_BASES: dict[int, np.ndarray] = {}


def _index(shape: Shape, items: int, kind: str) -> tuple[object, np.ndarray]:
    """The index for this shape's (head, views, size, kind), built once and shared by the shapes that match."""
    from cloud_lambda.index import create_index

    key = (shape.head_dim, shape.views, items, kind)
    rows = items * shape.views
    if rows not in _BASES:
        _BASES[rows] = clustered_catalog(rows, DIM, seed=5)
    base = _BASES[rows]
    if key not in _INDEXES:
        head = _head(shape.head_dim) if shape.head_dim else None
        vectors = head.project(base) if head is not None else base  # type: ignore[attr-defined]
        if kind == "auto":  # what `catalog index --index auto` builds for this many rows of this dim
            from cloud_lambda.index.choice import choose

            kind, params = choose(vectors.shape[0], vectors.shape[1])
        else:
            params = {}
        index = create_index(kind, vectors.shape[1], **params)
        index.build(vectors)
        _INDEXES[key] = index
    return _INDEXES[key], base


def search_p50(shape: Shape, items: int, kind: str, queries: int) -> tuple[str, list[set[int]]]:
    """Median ms of one message's search (all its regions, fold included) after 5 warm-up messages: wall time
    and, in brackets, the process's CPU time (what a loaded machine's preemption does not inflate); and the items
    each timed message found."""
    from cloud_lambda.index.fold import search_items
    from cloud_lambda.search.threads import limit_compute_threads

    head = _head(shape.head_dim) if shape.head_dim else None
    # One compute thread (faiss's OpenMP and numpy's BLAS), as the search service runs, for the build too:
    # threads left spinning by a 2-thread build stole the core from the searches timed right after it (a first
    # run measured 20-25 ms per 4-region message that way, against ≈ 3 ms in a quiet process).
    limit_compute_threads()
    index, base = _index(shape, items, kind)
    owners = np.repeat(np.arange(items), shape.views)
    probes = queries_near(base, (queries + 5) * shape.regions, seed=6).reshape(queries + 5, shape.regions, DIM)
    times, cpu, found = [], [], []
    for i, probe in enumerate(probes):
        started, started_cpu = time.perf_counter(), time.process_time()
        _, got = search_items(index, owners, shape.views, probe, K, head)  # type: ignore[arg-type]
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            found.append(set(got.tolist()))
    return f"{np.percentile(times, 50):.3g} ({np.percentile(cpu, 50):.3g})", found


def recall(found: list[set[int]], truth: list[set[int]]) -> str:
    """Mean share of each message's exact top-``K`` items (exact fold) that ``found`` has."""
    return f"{np.mean([len(f & t) / K for f, t in zip(found, truth, strict=True)]):.3f}"


def _auto_kinds(sizes: list[int]) -> str:
    from cloud_lambda.index.choice import choose

    def one(n: int, dim: int) -> str:
        kind, params = choose(n, dim)
        return f"{kind} {params}" if params else kind

    return "; ".join(f"{n // 1000}k: {one(n, DIM)}, adapted {one(n, 256)}" for n in sizes)


def blank_look(repeats: int) -> list[list[object]]:
    """The device's look at whether its crop is blank (model.retrieval.frame_crop), against the frame preparation it
    precedes, on 1280×720 frames: a textured one (the crop is kept) and a plain wall (the whole frame is taken)."""
    from model.prepare import prepare_frame
    from model.retrieval.frame_crop import FrameCrop
    from model.retrieval.settings import DEFAULT_QUERY_REGIONS, device_roi

    rng = np.random.default_rng(3)
    textured = np.repeat(np.repeat(rng.integers(0, 256, (72, 128, 3), dtype=np.uint8), 10, axis=0), 10, axis=1)
    wall = np.clip(rng.normal(180.0, 2.5, (720, 1280, 3)), 0, 255).astype(np.uint8)
    crop = FrameCrop(roi=device_roi(DEFAULT_QUERY_REGIONS), whole=None, blank_below=DEFAULT_QUERY_REGIONS.blank_below)
    rows: list[list[object]] = []
    for name, frame in (("textured (crop kept)", textured), ("plain wall (whole frame)", wall)):
        look, prepare = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            roi = crop.roi_for(frame)
            looked = time.perf_counter()
            prepare_frame(frame, 224, roi)
            prepare.append((time.perf_counter() - looked) * 1000)
            look.append((looked - started) * 1000)
        look_ms, prepare_ms = float(np.median(look)), float(np.median(prepare))
        rows.append([name, "whole" if roi is None else "crop", f"{look_ms:.3f}", f"{prepare_ms:.3f}"])
    return rows


def run(quick: bool) -> None:
    """``BENCH_RETRIEVAL_SIZES=10000,100000`` (items), ``BENCH_RETRIEVAL_ONLY=head`` (options whose name holds
    it)."""
    default = "10000" if quick else "10000,100000"
    sizes = [int(n) for n in os.environ.get("BENCH_RETRIEVAL_SIZES", default).split(",")]
    only = os.environ.get("BENCH_RETRIEVAL_ONLY", "")
    started_load = os.getloadavg()[0]
    rows = []
    for shape in (s for s in SHAPES if only in s.name):
        row: list[object] = [shape.name, message_bytes(shape)]
        for items in sizes:
            # Catalog views multiply the index rows (300k at 100k items): measured at 10k only, to fit the bench.
            if shape.views > 1 and items > 10_000:
                row += ["—", "—", "—"]
                continue
            exact, truth = search_p50(shape, items, "exact", 50 if quick else 100)
            auto, found = search_p50(shape, items, "auto", 50 if quick else 100)
            row += [exact, auto, recall(found, truth)]
        rows.append(row)
    headers = ["option", "bytes/message"]
    headers += [f"{col} @{n // 1000}k" for n in sizes for col in ("exact p50 ms", "auto p50 ms", "auto recall@5")]
    print_table(
        "Retrieval options: wire bytes and search time per message (cloud_lambda.index.fold.search_items)",
        headers,
        rows,
        "One message = one frame: all its region vectors searched in one batch, folded per item (max), one OpenMP"
        " thread as in the search service; wall ms (process CPU ms); median of 100 messages (50 with --quick)."
        " auto recall@5: the share of the exact fold's top 5 items that auto's search found. auto: the index"
        f" `--index auto` builds ({_auto_kinds(sizes)}). Load average {started_load:.1f} at the start,"
        f" {os.getloadavg()[0]:.1f} now, on {os.cpu_count()} cores (shared machine).",
    )
    print_table(
        "The device's look at its crop before the inference (model.retrieval.frame_crop, default blank_below"
        " 0.15), 1280×720 frames",
        ["frame", "featurized", "look ms", "prepare ms"],
        blank_look(50 if quick else 200),
        "Median wall ms per frame; prepare: crop (or whole frame) + resize to 224. The inference that follows is"
        " the same either way (model eval --heldup prints device ms per frame with the look included).",
    )
