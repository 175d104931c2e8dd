"""Catalog side: several views per catalog item, and per-item aggregation (max score) at search time.

A camera sees *parts* of a product (the hand and the frame cut the rest off), while a catalog photo shows all
of it. Indexing crops at several scales (and flips) lets the catalog "see" those parts too, in one of two ways:

- ``rows``: every view is its own index row; the index holds ``count`` rows per item and a search folds them
  back so every item appears once, with the score of its best view (search cost grows with the rows);
- ``mean``: the views' vectors are averaged (then L2-normalized) into the item's one row. The search is
  unchanged; indexing runs one inference per view. The default for a model that crops the frame's centre
  (:func:`model.retrieval.settings.default_catalog_views`): the whole image and the device's own crop of it,
  so the one row sits between what a camera framing the whole product and one framing its middle send.

Pure numpy/cv2: the cloud indexer and search import it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.prepare import Roi


class CatalogViews(BaseModel):
    """Which views of each catalog image are indexed. Recorded in the index manifest (``catalog_views``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full: bool = Field(default=True, description="The whole image (centre square, as a device frame would be).")
    scales: tuple[float, ...] = Field(
        default=(), description="Square crops with this side, as a fraction of the image's shorter side."
    )
    grid: int = Field(
        default=1, ge=1, le=4, description="Crops per scale per axis: 1 = centred only, 2 = 2×2 spread, 3 = 3×3."
    )
    flip: bool = Field(default=False, description="Also index the horizontal mirror of every view.")
    combine: Literal["rows", "mean"] = Field(
        default="rows",
        description="rows: one index row per view (max over views at search); mean: the views' normalized mean, one row.",
    )

    @field_validator("scales")
    @classmethod
    def _scales_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for scale in value:
            if not 0.2 <= scale < 1.0:
                raise ValueError(f"each scale must be in [0.2, 1.0), got {scale}")
        return tuple(sorted(set(value), reverse=True))

    @model_validator(mode="after")
    def _mean_needs_views(self) -> CatalogViews:
        if self.combine == "mean" and self.images < 2:
            raise ValueError("mean combines several views: give at least two (e.g. full,0.6,mean)")
        return self

    @property
    def images(self) -> int:
        """View images featurized per catalog item."""
        return (int(self.full) + len(self.scales) * self.grid * self.grid) * (2 if self.flip else 1)

    @property
    def count(self) -> int:
        """Index rows per catalog item."""
        return 1 if self.combine == "mean" else self.images

    @property
    def is_single(self) -> bool:
        """One index row per item (one view, or several averaged)."""
        return self.count == 1

    def describe(self) -> str:
        if self.images == 1:
            return "1 view"
        parts = ["full"] if self.full else []
        if self.scales:
            parts.append(f"crops {'/'.join(f'{s:g}' for s in self.scales)} ×{self.grid * self.grid}")
        if self.flip:
            parts.append("+flip")
        if self.combine == "mean":
            return f"mean of {self.images} views ({', '.join(parts)}), 1 row"
        return f"{self.count} views ({', '.join(parts)})"


SINGLE_VIEW = CatalogViews()


def parse_views(text: str) -> CatalogViews:
    """``--catalog-views``: ``1`` (one view) or a comma list of ``full``, crop scales (``0.7``), ``grid=N``,
    ``flip`` and ``mean``; e.g. ``full,0.7,0.5`` (3 rows per item), ``full,0.7,grid=2,flip`` (10 rows) or
    ``full,0.6,mean`` (2 views averaged into 1 row). ``auto`` (the command's default) is resolved against the
    model by :func:`model.retrieval.settings.default_catalog_views`, not here.

    Raises ValueError naming the bad token.
    """
    tokens = [t.strip().lower() for t in text.split(",") if t.strip()]
    if tokens in ([], ["1"], ["single"]):
        return SINGLE_VIEW
    full, flip, grid, mean = False, False, 1, False
    scales: list[float] = []
    for token in tokens:
        if token == "full":
            full = True
        elif token == "flip":
            flip = True
        elif token == "mean":
            mean = True
        elif token.startswith("grid="):
            try:
                grid = int(token[len("grid=") :])
            except ValueError:
                raise ValueError(f"--catalog-views: {token!r}: grid=N needs an integer") from None
        else:
            try:
                scales.append(float(token))
            except ValueError:
                raise ValueError(
                    f"--catalog-views: unknown token {token!r} (use 1, or full, crop scales like 0.7, grid=N, flip, mean)"
                ) from None
    try:
        combine: Literal["rows", "mean"] = "mean" if mean else "rows"
        return CatalogViews(full=full, scales=tuple(scales), grid=grid, flip=flip, combine=combine)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"--catalog-views {text!r}: {exc}") from None


def view_rois(width: int, height: int, views: CatalogViews) -> list[Roi]:
    """The ROIs (fractions of the image) of every non-flipped view, in a fixed order."""
    rois: list[Roi] = []
    if views.full:
        rois.append(Roi())
    short = min(width, height)
    for scale in views.scales:
        side = scale * short
        fw, fh = side / width, side / height
        steps = [0.5] if views.grid == 1 else list(np.linspace(0.0, 1.0, views.grid))
        for gy in steps:
            for gx in steps:
                rois.append(Roi(x=(1.0 - fw) * gx, y=(1.0 - fh) * gy, w=fw, h=fh))
    return rois


def catalog_views(image: np.ndarray, views: CatalogViews) -> list[np.ndarray]:
    """The view images of one catalog image (BGR uint8), ``views.images`` of them, ready for ``prepare_frame``."""
    from model.prepare import crop_square

    height, width = image.shape[:2]
    out = [np.ascontiguousarray(crop_square(image, roi)) for roi in view_rois(width, height, views)]
    if views.flip:
        out += [np.ascontiguousarray(view[:, ::-1]) for view in out]
    return out


def combine_rows(vectors: np.ndarray, views: CatalogViews) -> np.ndarray:
    """Featurized views ``[items × views.images, D]`` (each item's views together, in :func:`catalog_views`'s
    order) → the index rows ``[items × views.count, D]``: unchanged for ``rows``, the L2-normalized mean of each
    item's views for ``mean``."""
    if views.combine == "rows":
        return vectors
    per_item = np.asarray(vectors, dtype=np.float32).reshape(-1, views.images, vectors.shape[-1])
    mean = per_item.mean(axis=1)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    # Views of one image point the same way (cosine well above 0), so their mean is never near zero.
    return (mean / np.maximum(norms, 1e-12)).astype(np.float32)


def aggregate_max(
    scores: np.ndarray, positions: np.ndarray, owners: Sequence[int] | np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fold view hits into item hits: ``[Q, K']`` view scores/positions → ``[Q, k]`` item scores/items.

    ``owners[row]`` is the item index of index row ``row``. Each item appears at most once per query, with
    its best view's score, items ordered by that score (ties: lower item index first). Missing hits
    (position -1) are skipped; rows with fewer than ``k`` items are padded with -inf / -1.
    """
    owner_arr = np.asarray(owners, dtype=np.int64)
    q = scores.shape[0]
    out_scores = np.full((q, k), -np.inf, dtype=np.float32)
    out_items = np.full((q, k), -1, dtype=np.int64)
    for row in range(q):
        best: dict[int, float] = {}
        for score, position in zip(scores[row], positions[row], strict=True):
            if position < 0 or not np.isfinite(score):
                continue
            item = int(owner_arr[int(position)])
            if item not in best or score > best[item]:
                best[item] = float(score)
        ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
        for j, (item, score) in enumerate(ranked):
            out_items[row, j] = item
            out_scores[row, j] = score
    return out_scores, out_items


def oversample(k: int, views: CatalogViews, rows: int) -> int:
    """How many view rows to fetch so that ``k`` distinct items survive the fold (all views of k items)."""
    return min(rows, k * views.count)
