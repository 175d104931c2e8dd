"""Adapting to one catalog: training views → the deployed model's own region vectors → a projection head.

The vectors are computed exactly as a device computes them (the model file on a real runtime, the model's crop
inside the frame, its region vectors), so the head learns the space the search receives. Featurized views are
cached per item in ``work_dir`` and the head is checkpointed after every epoch, so an interrupted run resumes
where it stopped; the cache key holds the model id, the settings and each image's content hash.

The before/after figures use views the head never saw: another seed of the training generator ("held-out
training-style views") and plain camera views of the catalog photos (:mod:`model.data.views`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.adapt.head import HeadSettings, HeadState, train_head
from model.adapt.views import training_view
from model.data.views import camera_view
from model.prepare import Roi, prepare_frame
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews, catalog_views, combine_rows
from model.retrieval.frame_crop import FrameCrop, as_crop
from model.retrieval.head import ProjectionHead

HOLDOUT_SEED_OFFSET = 1_000_003
"""Held-out views come from another seed stream than any training view."""


class Vectorizer:
    """What adaptation needs of a featurizer: frames → region vectors as the device sends them."""

    def __init__(
        self, featurizer: Any, crop: FrameCrop | Roi | None, batch: int = 32, views: CatalogViews = SINGLE_VIEW
    ) -> None:
        self.featurizer = featurizer
        self.crop = as_crop(crop)
        """What the device featurizes of a frame (the model's crop, the whole frame where it is blank)."""
        self.batch = batch
        self.views = views
        """The index's catalog views (its manifest): how :meth:`catalog` makes each item's vector."""

    @property
    def model_id(self) -> str:
        return str(self.featurizer.model_id)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """BGR frames of any size → float32 ``[N, R, D]``."""
        size = self.featurizer.input_size
        parts = []
        for start in range(0, len(frames), self.batch):
            prepared = np.stack([self.crop.prepare(f, size) for f in frames[start : start + self.batch]])
            parts.append(self.featurizer.featurize_regions(prepared))
        return np.concatenate(parts)

    def catalog(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Catalog images → float32 ``[N, D]`` as ``catalog index`` stores them: the model's ``embedding`` (the
        whole map, whatever its regions) of the whole image, or of every view averaged (``mean`` views). An
        index with several rows per item is trained on its whole-image rows."""
        views = self.views if self.views.combine == "mean" else SINGLE_VIEW
        size = self.featurizer.input_size
        frames = list(images) if views.images == 1 else [v for image in images for v in catalog_views(image, views)]
        parts = []
        for start in range(0, len(frames), self.batch):
            prepared = np.stack([prepare_frame(frame, size) for frame in frames[start : start + self.batch]])
            parts.append(self.featurizer.featurize(prepared))
        return combine_rows(np.concatenate(parts), views)


@dataclass(frozen=True)
class AdaptSettings:
    views_per_item: int = 60
    holdout_views: int = 6
    seed: int = 0
    head: HeadSettings = field(default_factory=HeadSettings)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """Hash of what shapes the training views (not the head's settings: the views stay valid for those)."""
        text = json.dumps({"views": self.views_per_item, "seed": self.seed, "generator": 2}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def data_hash(ids: Sequence[str], images: Sequence[np.ndarray]) -> str:
    """Content hash of the training data: item ids and pixels (the images the head was trained on)."""
    digest = hashlib.sha256()
    for item_id, image in sorted(zip(ids, images, strict=True), key=lambda pair: pair[0]):
        digest.update(item_id.encode("utf-8") + b"\0" + hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest())
    return digest.hexdigest()


def item_views(images: Sequence[np.ndarray], item: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` training views of item ``item``; the other items make the backgrounds."""
    rng = np.random.default_rng([seed, item])
    others = [image for j, image in enumerate(images) if j != item]
    return [training_view(images[item], others, rng) for _ in range(count)]


def featurize_views(
    vectorize: Vectorizer,
    images: Sequence[np.ndarray],
    settings: AdaptSettings,
    work_dir: Path | None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """→ (vectors ``[items × views, R, D]``, labels): every item's training views, cached per item in ``work_dir``."""
    from tqdm import tqdm

    parts, labels = [], []
    for item in tqdm(range(len(images)), desc="adapt: training views", unit="item", disable=not progress):
        cached = _cache_path(work_dir, vectorize.model_id, settings, images[item], item)
        if cached is not None and cached.exists():
            vectors = np.load(cached)
        else:
            vectors = vectorize(item_views(images, item, settings.views_per_item, settings.seed)).astype(np.float16)
            if cached is not None:
                tmp = cached.with_name(cached.name + ".tmp.npy")
                np.save(tmp, vectors)
                tmp.replace(cached)
        parts.append(vectors.astype(np.float32))
        labels.append(np.full(len(vectors), item, dtype=np.int64))
    return np.concatenate(parts), np.concatenate(labels)


def _cache_path(
    work_dir: Path | None, model_id: str, settings: AdaptSettings, image: np.ndarray, item: int
) -> Path | None:
    if work_dir is None:
        return None
    folder = Path(work_dir) / "views"
    folder.mkdir(parents=True, exist_ok=True)
    content = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]
    return folder / f"{model_id}-{settings.key}-{item}-{content}.npy"


def holdout_sets(
    images: Sequence[np.ndarray], settings: AdaptSettings
) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Views never trained on: another seed of the training generator, and plain camera views."""
    styled: list[np.ndarray] = []
    camera: list[np.ndarray] = []
    for item in range(len(images)):
        styled += item_views(images, item, settings.holdout_views, settings.seed + HOLDOUT_SEED_OFFSET)
        rng = np.random.default_rng([settings.seed + HOLDOUT_SEED_OFFSET, item, 1])
        camera += [camera_view(images[item], rng) for _ in range(settings.holdout_views)]
    labels = np.repeat(np.arange(len(images)), settings.holdout_views)
    return {"held-out training-style views": (styled, labels), "camera views": (camera, labels)}


def recall(
    queries: np.ndarray, labels: np.ndarray, catalog: np.ndarray, head: ProjectionHead | None
) -> dict[str, float]:
    """R@1/R@5 of ``queries [Q, R, D]`` against ``catalog [items, D]`` (max over regions), optionally projected."""
    q, c = queries, catalog
    if head is not None:
        q = head.project(q.reshape(-1, q.shape[-1])).reshape(q.shape[0], q.shape[1], -1)
        c = head.project(c)
    scores = np.einsum("qrd,cd->qrc", q, c).max(axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.argmax(order == labels[:, None], axis=1)
    return {"recall@1": float((rank < 1).mean()), "recall@5": float((rank < 5).mean())}


@dataclass
class Adapted:
    head: ProjectionHead
    settings: AdaptSettings
    data_hash: str
    model_id: str
    items: int
    seconds: float
    before_after: list[dict[str, Any]]
    catalog_views: dict[str, Any] = field(default_factory=dict)
    """How the catalog vectors it was trained on were made (the index's ``retrieval.catalog_views``)."""

    def manifest_section(self) -> dict[str, Any]:
        """What the index manifest records under ``adaptation`` (layout adds the head's hash and dimensions)."""
        return {
            "kind": "projection_head",
            "model_id": self.model_id,
            "data_hash": self.data_hash,
            "settings": self.settings.as_dict(),
            "items": self.items,
            "catalog_views": self.catalog_views,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(self.seconds, 1),
            "before_after": self.before_after,
        }


def adapt(
    ids: Sequence[str],
    images: Sequence[np.ndarray],
    vectorize: Vectorizer,
    settings: AdaptSettings = AdaptSettings(),
    work_dir: Path | None = None,
    progress: bool = True,
    before_after: bool = True,
) -> Adapted:
    """Train a projection head for the catalog ``images`` (item ``i`` = ``ids[i]``) on ``vectorize``'s vectors.

    ``before_after``: also score held-out views before and after (the command's table; evaluations that score
    their own query sets skip it)."""
    if len(images) < 2:
        raise ValueError("adaptation needs at least 2 catalog items (each item is its own class)")
    started = time.perf_counter()
    catalog = vectorize.catalog(images)  # exactly the vectors the index holds and the head will project
    views, labels = featurize_views(vectorize, images, settings, work_dir, progress)
    head, _ = _train(views, labels, catalog, settings, work_dir, vectorize.model_id, progress)
    table = []
    for name, (frames, truth) in holdout_sets(images, settings).items() if before_after else ():
        queries = vectorize(frames)
        before, after = recall(queries, truth, catalog, None), recall(queries, truth, catalog, head)
        table.append({"views": name, "queries": len(frames), "before": before, "after": after})
    seconds = time.perf_counter() - started
    recipe = vectorize.views.model_dump(mode="json")
    return Adapted(head, settings, data_hash(ids, images), vectorize.model_id, len(images), seconds, table, recipe)


def _train(
    views: np.ndarray,
    labels: np.ndarray,
    catalog: np.ndarray,
    settings: AdaptSettings,
    work_dir: Path | None,
    model_id: str,
    progress: bool,
) -> tuple[ProjectionHead, np.ndarray]:
    """Train the head, checkpointing every epoch in ``work_dir`` (a finished or partial run resumes)."""
    from tqdm import tqdm

    checkpoint = None if work_dir is None else Path(work_dir) / "head-checkpoint.npz"
    data = hashlib.sha256(views.tobytes() + catalog.astype(np.float32).tobytes()).hexdigest()
    key = hashlib.sha256(json.dumps([model_id, settings.as_dict(), data]).encode()).hexdigest()
    start = _load_checkpoint(checkpoint, key)
    bar = tqdm(
        total=settings.head.epochs,
        initial=start.epoch if start else 0,
        desc="adapt: head",
        unit="epoch",
        disable=not progress,
    )

    def on_epoch(loss: float, state: HeadState) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if checkpoint is not None:
            tmp = checkpoint.with_name(checkpoint.name + ".tmp.npz")
            np.savez(tmp, **{"key": np.array(key), **state.arrays()})  # type: ignore[arg-type]
            tmp.replace(checkpoint)

    try:
        return train_head(views, labels, catalog, settings.head, on_epoch, start)
    finally:
        bar.close()


def _load_checkpoint(path: Path | None, key: str) -> HeadState | None:
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key:
            return None  # other data or settings: start over rather than continue someone else's run
        return HeadState.from_arrays(dict(data))


def with_head_settings(settings: AdaptSettings, **changes: Any) -> AdaptSettings:
    return replace(settings, head=replace(settings.head, **changes))
