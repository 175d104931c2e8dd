"""The held-up-object evaluation: recall@1/@5 of held-up query frames against clean catalog photos.

One row per (featurizer, catalog views, query regions). The catalog is indexed as the cloud indexer would
(each view through the one ``prepare_frame``), queries are featurized as the device would (regions →
``prepare_frame`` → one batch → combined vector), and every item counts once with its best view's score.
Beside recall: the device's per-frame time for that option (prepare + proposals + inference + combine on a
1280×720 frame, real ONNX runtime) and the index size (rows, MB of float32 vectors).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from model.eval.heldup.views import HeldUpSet
from model.prepare import prepare_frame
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews, aggregate_max, catalog_views, oversample
from model.retrieval.query_regions import NO_REGIONS, QueryRegions, combine, prepare_regions

DEVICE_FRAME = (1280, 720)


class PreparedEmbedder(Protocol):
    name: str
    input_size: int
    dim: int

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` BGR → float32 ``[N, D]`` L2-normalized."""
        ...


class RawPixels:
    """The baseline every learned featurizer must beat: 16×16 mean-centred pixels of the prepared frame."""

    def __init__(self, input_size: int = 224, side: int = 16) -> None:
        self.name = f"raw pixels {side}×{side}"
        self.input_size = input_size
        self.dim = side * side * 3
        self._side = side

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        rows = []
        for frame in batch:
            small = cv2.resize(frame, (self._side, self._side), interpolation=cv2.INTER_AREA).astype(np.float32)
            v = small.ravel() - small.mean()
            rows.append(v / max(float(np.linalg.norm(v)), 1e-6))
        return np.stack(rows).astype(np.float32)


class OnnxEmbedder:
    """An exported model file on a real runtime (what the device and the indexer run)."""

    def __init__(self, path: Path, backend: str = "auto", threads: int | None = None, batch: int = 16) -> None:
        from model.featurizer import Featurizer

        self.featurizer = Featurizer(path, backend=backend, threads=threads)
        sc = self.featurizer.sidecar
        self.name = f"{sc.backbone} {sc.pooling} {sc.variant}"
        self.input_size = self.featurizer.input_size
        self.dim = self.featurizer.dim
        self.path = Path(path)
        self._batch = batch

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        parts = [self.featurizer.featurize(batch[i : i + self._batch]) for i in range(0, len(batch), self._batch)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


class FeatureMaps:
    """Torch feature maps of prepared frames, computed once and shared by every pooling under test.

    The cheap way to choose a pooling: one backbone pass per image, then each pooling is a reduction.
    """

    def __init__(self, backbone: str = "efficientnet-lite0", batch: int = 16) -> None:
        from model.backbones.base import get_backbone
        from model.export.graph import FeaturizerGraph

        chosen = get_backbone(backbone)
        self.spec = chosen.spec
        self.graph = FeaturizerGraph(chosen.build(None), chosen.spec, "avg").eval()
        self._cache: dict[bytes, np.ndarray] = {}
        self._batch = batch

    def maps(self, batch: np.ndarray) -> np.ndarray:
        import torch

        keys = [hashlib.sha1(frame.tobytes()).digest() for frame in batch]
        todo = [i for i, key in enumerate(keys) if key not in self._cache]
        for start in range(0, len(todo), self._batch):
            chunk = todo[start : start + self._batch]
            with torch.no_grad():
                out = self.graph.feature_map(torch.from_numpy(np.ascontiguousarray(batch[chunk]))).numpy()
            for i, fmap in zip(chunk, out, strict=True):
                self._cache[keys[i]] = fmap.astype(np.float16)
        return np.stack([self._cache[key] for key in keys]).astype(np.float32)


class TorchPooling:
    """fp32 torch backbone + one of :data:`model.retrieval.pooling.POOLINGS` (for choosing before exporting)."""

    def __init__(self, maps: FeatureMaps, pooling: str) -> None:
        self.name = f"{maps.spec.name} {pooling} torch-fp32"
        self.input_size = maps.spec.input_size
        self.dim = maps.spec.dim
        self.pooling = pooling
        self._maps = maps

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from model.retrieval.pooling import pool_map

        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        pooled = pool_map(torch.from_numpy(self._maps.maps(batch)), self.pooling)
        return F.normalize(pooled, p=2.0, dim=1).numpy().astype(np.float32)


@dataclass
class Row:
    technique: str
    featurizer: str
    views: str
    regions: str
    recall1: float
    recall5: float
    index_rows: int
    index_mb: float
    device_ms: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def embed_catalog(
    embedder: PreparedEmbedder, images: Sequence[np.ndarray], views: CatalogViews
) -> tuple[np.ndarray, np.ndarray]:
    """→ (vectors ``[rows, D]``, owners ``[rows]``): every view of every item, as the indexer writes them."""
    frames: list[np.ndarray] = []
    owners: list[int] = []
    for item, image in enumerate(images):
        for view in catalog_views(image, views):
            frames.append(prepare_frame(view, embedder.input_size))
            owners.append(item)
    return embedder.embed_prepared(np.stack(frames)), np.array(owners, dtype=np.int64)


def embed_queries(embedder: PreparedEmbedder, frames: Sequence[np.ndarray], regions: QueryRegions) -> np.ndarray:
    """One vector per query frame, as the device computes it (one batch of regions per frame)."""
    batches = [prepare_regions(frame, embedder.input_size, regions) for frame in frames]
    sizes = [len(b) for b in batches]
    flat = embedder.embed_prepared(np.concatenate(batches))
    out, start = [], 0
    for size in sizes:
        out.append(combine(flat[start : start + size], regions))
        start += size
    return np.stack(out)


def item_scores(similarity: np.ndarray, owners: Sequence[int] | np.ndarray, items: int) -> np.ndarray:
    """Dense version for evaluation: ``[Q, rows]`` similarities → ``[Q, items]`` best score per item."""
    owner_arr = np.asarray(owners, dtype=np.int64)
    out = np.full((similarity.shape[0], items), -np.inf, dtype=np.float32)
    np.maximum.at(out.T, owner_arr, similarity.T.astype(np.float32))
    return out


def recall_at(scores: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """``scores [Q, items]`` (one score per item) → recall@k: the true item is among the top k."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.argmax(order == truth[:, None], axis=1)
    return {k: float((rank < k).mean()) for k in ks}


def score_option(
    data: HeldUpSet,
    embedder: PreparedEmbedder,
    views: CatalogViews = SINGLE_VIEW,
    regions: QueryRegions = NO_REGIONS,
    catalog_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[float, float, int]:
    """recall@1, recall@5 and the number of index rows for one option."""
    key = (embedder.name, views.model_dump_json())
    if catalog_cache is not None and key in catalog_cache:
        vectors, owners = catalog_cache[key]
    else:
        vectors, owners = embed_catalog(embedder, data.catalog, views)
        if catalog_cache is not None:
            catalog_cache[key] = (vectors, owners)
    queries = embed_queries(embedder, data.queries, regions)
    per_item = item_scores(queries @ vectors.T, owners, len(data.catalog))
    recall = recall_at(per_item, data.query_items)
    return recall[1], recall[5], int(vectors.shape[0])


def device_frame_ms(
    model_path: Path,
    regions: QueryRegions,
    frames: Sequence[np.ndarray],
    backend: str = "auto",
    threads: int | None = None,
    repeats: int = 3,
) -> float:
    """Median per-frame ms of the device's work for one frame: prepare + proposals + inference + combine.

    Frames are upscaled to 1280×720 first (a device camera's size) so the resize cost is the real one.
    """
    from model.featurizer import Featurizer

    featurizer = Featurizer(model_path, backend=backend, threads=threads, warmup=3)
    size = featurizer.input_size
    big = [cv2.resize(f, DEVICE_FRAME, interpolation=cv2.INTER_LINEAR) for f in frames]
    times = []
    for _ in range(repeats):
        for frame in big:
            started = time.perf_counter()
            combine(featurizer.featurize(prepare_regions(frame, size, regions)), regions)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def index_mb(rows: int, dim: int) -> float:
    return rows * dim * 4 / 1e6


SEARCH_ITEMS = 10_000


def search_ms(dim: int, views: CatalogViews, items: int = SEARCH_ITEMS, queries: int = 30, k: int = 5) -> float:
    """Median ms of one exact k-NN query + per-item fold over ``items × views.count`` rows (random unit vectors).

    What the search Lambda does per message with the exact index (one matrix-vector product, a partial sort,
    :func:`aggregate_max`); the eval's own 43-item catalog is too small to show how views scale the cost.
    """
    rng = np.random.default_rng(0)
    rows = items * views.count
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    owners = np.repeat(np.arange(items), views.count)
    fetch = oversample(k, views, rows)
    times = []
    for q in rng.standard_normal((queries, dim), dtype=np.float32):
        started = time.perf_counter()
        sims = matrix @ q
        top = np.argpartition(-sims, fetch - 1)[:fetch]
        top = top[np.argsort(-sims[top])]
        if not views.is_single:
            aggregate_max(sims[top][None], top[None], owners, k)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def print_rows(rows: Sequence[Row], title: str, echo: Callable[[str], None] = print) -> None:
    """A markdown table: the one printed in the closing note."""
    baseline = next((r.device_ms for r in rows if r.technique.startswith("baseline") and r.device_ms), None)
    echo(f"\n### {title}")
    header = ["technique", "featurizer", "catalog views", "query regions", "recall@1", "recall@5"]
    header += ["device ms/frame", "× baseline", "index rows", "index MB"]
    header += [f"search ms ({SEARCH_ITEMS // 1000}k items)", f"index MB ({SEARCH_ITEMS // 1000}k items)", "note"]
    echo("| " + " | ".join(header) + " |")
    echo("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        ratio = f"{r.device_ms / baseline:.2f}" if r.device_ms and baseline else ""
        cells = [
            r.technique,
            r.featurizer,
            r.views,
            r.regions,
            f"{r.recall1:.3f}",
            f"{r.recall5:.3f}",
            f"{r.device_ms:.2f}" if r.device_ms else "—",
            ratio,
            str(r.index_rows),
            f"{r.index_mb:.2f}",
            f"{r.extra['search_ms']:.2f}" if "search_ms" in r.extra else "",
            f"{r.extra['index_mb_10k']:.1f}" if "index_mb_10k" in r.extra else "",
            r.note,
        ]
        echo("| " + " | ".join(cells) + " |")
