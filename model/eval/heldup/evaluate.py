"""Scoring one option of the held-up evaluation: recall of each query set, device time, bytes per message.

An option is an exported model file (its pooling, query crop and region vectors are in the file), the catalog
views the index holds, and optionally a catalog adaptation. The catalog is embedded as the indexer embeds it
(each view through ``prepare_frame``, the model's whole-frame vector); queries as the device embeds them (the
model's crop inside the frame, its region vectors); an item's score is its best (region, view) pair — exactly
what :func:`cloud_lambda.index.fold.search_items` returns. Vectors are cached on disk per (model file,
frames) so comparing options never recomputes the backbone.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.retrieval.catalog_views import CatalogViews, catalog_views, combine_rows
from model.retrieval.head import ProjectionHead
from model.retrieval.settings import effective_crop

DEVICE_FRAME = (1280, 720)
"""Device time is measured on frames of a camera's size, so the resize cost is the real one."""


def frames_key(frames: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(hashlib.sha1(np.ascontiguousarray(frame).tobytes()).digest())
    return digest.hexdigest()[:20]


class EvalModel:
    """One exported model file, run as the device and the indexer run it, with a disk cache of its vectors."""

    def __init__(self, path: Path, cache_dir: Path | None, backend: str = "auto", threads: int | None = None) -> None:
        from model.featurizer import Featurizer
        from model.sidecar import file_sha256

        self.path = Path(path)
        self.featurizer = Featurizer(self.path, backend=backend, threads=threads, choice_cache=False)
        sidecar = self.featurizer.sidecar
        self.crop = effective_crop(sidecar, None)
        self.regions = self.featurizer.regions
        self.name = f"{sidecar.backbone} {sidecar.pooling} {sidecar.variant}"
        self._cache = None if cache_dir is None else Path(cache_dir) / file_sha256(self.path)[:16]
        if self._cache is not None:
            self._cache.mkdir(parents=True, exist_ok=True)

    @property
    def model_id(self) -> str:
        return self.featurizer.model_id

    def _cached(self, what: str, frames: Sequence[np.ndarray], compute: object) -> np.ndarray:
        path = None if self._cache is None else self._cache / f"{what}-{frames_key(frames)}.npy"
        if path is not None and path.exists():
            return np.load(path).astype(np.float32)
        vectors = compute()  # type: ignore[operator]
        if path is not None:
            np.save(path, vectors.astype(np.float16))
        return np.asarray(vectors, dtype=np.float32)

    def _embed(self, frames: Sequence[np.ndarray], roi: object, batch: int = 32, regions: bool = True) -> np.ndarray:
        """``[N, R, D]`` region vectors (``regions=False``: ``[N, 1, D]``, the model's whole-map embedding)."""
        from model.prepare import prepare_frame

        size = self.featurizer.input_size
        out = []
        for start in range(0, len(frames), batch):
            chunk = np.stack([prepare_frame(f, size, roi) for f in frames[start : start + batch]])  # type: ignore[arg-type]
            out.append(
                self.featurizer.featurize_regions(chunk) if regions else self.featurizer.featurize(chunk)[:, None]
            )
        return np.concatenate(out)

    def queries(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """``[Q, R, D]``: what the device sends for each frame (the whole frame's where the model's crop is blank)."""
        vectors = self._cached("queries", frames, lambda: self._embed(frames, self.crop.roi))
        blank = [position for position, frame in enumerate(frames) if self.crop.is_blank(frame)]
        if blank:
            whole = [frames[position] for position in blank]
            vectors[blank] = self._cached("queries-whole", whole, lambda: self._embed(whole, self.crop.whole))
        return vectors

    def blank_share(self, frames: Sequence[np.ndarray]) -> float:
        """Fraction of ``frames`` whose crop is blank (the device featurizes the whole frame instead)."""
        return sum(self.crop.is_blank(frame) for frame in frames) / max(len(frames), 1)

    def catalog(self, images: Sequence[np.ndarray], views: CatalogViews) -> tuple[np.ndarray, np.ndarray]:
        """(``[rows, D]`` the indexer's vectors, owners ``[rows]``)."""
        frames = [view for image in images for view in catalog_views(image, views)]
        # As ``catalog index`` does: each view's ``embedding`` (the whole map, whatever its regions), then the
        # views as rows or averaged into one (``mean``).
        vectors = self._cached("catalog-embedding", frames, lambda: self._embed(frames, None, regions=False)[:, 0, :])
        owners = np.repeat(np.arange(len(images), dtype=np.int64), views.count)
        return combine_rows(vectors, views), owners


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


def score_queries(
    queries: np.ndarray,
    truth: np.ndarray,
    catalog: np.ndarray,
    owners: np.ndarray,
    items: int,
    head: ProjectionHead | None = None,
    regions: Sequence[int] | None = None,
) -> dict[int, float]:
    """Recall of ``queries [Q, R, D]`` (max over regions and views), optionally through a projection head."""
    q = queries if regions is None else queries[:, list(regions)]
    c = catalog
    if head is not None:
        q = head.project(q.reshape(-1, q.shape[-1])).reshape(q.shape[0], q.shape[1], -1)
        c = head.project(catalog)
    best = np.einsum("qrd,nd->qrn", q, c).max(axis=1)
    return recall_at(item_scores(best, owners, items), truth)


def per_item_recall(scores_rank1: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """Recall@1 per item: the weak rows a headline hides."""
    return {int(item): float(scores_rank1[truth == item].mean()) for item in np.unique(truth)}


def device_frame_ms(model: EvalModel, frames: Sequence[np.ndarray], repeats: int = 3) -> float:
    """Median per-frame ms of the device's work on a 1280×720 frame: prepare (the model's crop, after the look at
    whether it is blank) + one inference
    (every region vector). Encoding the message is left out (tens of µs; ``make bench`` measures the loop)."""
    featurizer = model.featurizer
    big = resize_to_device(frames)
    times = []
    for _ in range(repeats):
        for frame in big:
            started = time.perf_counter()
            featurizer.featurize_regions(model.crop.prepare(frame, featurizer.input_size)[None])
            times.append((time.perf_counter() - started) * 1000)
    return median(times)


def interleaved_frame_ms(models: Sequence[EvalModel], frames: Sequence[np.ndarray], rounds: int = 5) -> list[float]:
    """:func:`device_frame_ms` of every model, taken in turns (``rounds`` passes over the models, one pass of
    ``frames`` each), median over all: on a shared machine a burst of other work then hits every model alike,
    so the ratios between them hold even when the absolute figures move."""
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for position, model in enumerate(models):
            times[position].append(device_frame_ms(model, frames, repeats=1))
    return [median(t) for t in times]


@dataclass
class Row:
    technique: str
    model: str
    catalog: str
    regions: str
    recall: dict[str, dict[int, float]]
    device_ms: float | None = None
    message_bytes: int | None = None
    search: dict[str, float] = field(default_factory=dict)
    note: str = ""
    weak: list[str] = field(default_factory=list)


def timed(function: object, *args: object) -> tuple[object, float]:
    started = time.perf_counter()
    result = function(*args)  # type: ignore[operator]
    return result, time.perf_counter() - started


def resize_to_device(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [cv2.resize(f, DEVICE_FRAME, interpolation=cv2.INTER_LINEAR) for f in frames]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
