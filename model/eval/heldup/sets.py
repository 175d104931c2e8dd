"""The query sets of one part of the split: held-up views (centred, anywhere, aside) and plain camera views.

The catalog is every photo (43 here); the queries are made only from the part's photos, with the part's
seeds and backgrounds (:mod:`model.eval.heldup.split`). Placements draw from separate seed streams, so the
"centred" and "anywhere" frames of one item are independent draws, not the same frame moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.data.photos import load_photos
from model.data.views import camera_views
from model.eval.heldup.split import SEEDS, Part, names_in
from model.eval.heldup.views import (
    PLACEMENTS,
    background_names,
    build_heldup_set,
    load_backgrounds,
    placement_params,
)

SET_NAMES = ("anywhere", "centred", "camera", "aside")
CAMERA_VIEWS = 5
"""Plain camera views per photo per seed (crop, tilt, flip, blur, exposure, JPEG: model.data.views)."""


@dataclass
class QuerySet:
    frames: list[np.ndarray]
    items: np.ndarray
    """Catalog position of each frame's item."""


@dataclass
class PartSets:
    part: Part
    names: list[str]
    catalog: list[np.ndarray]
    sets: dict[str, QuerySet]
    camera_seeds: tuple[int, ...] = ()
    """Seeds of the camera set (the part's seeds, or more on the tuning part: :func:`camera_seeds_of`)."""

    def describe(self) -> str:
        photos = len(set(self.sets["anywhere"].items.tolist()))
        counts = ", ".join(f"{name} {len(s.frames)}" for name, s in self.sets.items())
        seeds = f"seeds {list(SEEDS[self.part])}"
        if self.camera_seeds != SEEDS[self.part]:
            seeds += f", camera seeds {self.camera_seeds[0]}-{self.camera_seeds[-1]}"
        return f"{self.part} part: queries of {photos} photos ({seeds}): {counts}; catalog {len(self.catalog)} items"


def camera_seeds_of(part: Part, count: int | None) -> tuple[int, ...]:
    """The camera set's seeds: the part's own (None), or ``count`` seeds from the part's first on the tuning part
    only — a bigger camera set to choose with where 190 views cannot tell settings apart. The held-out part keeps
    its recorded seeds: its figures are not enlarged after a choice."""
    if count is None:
        return SEEDS[part]
    if part != "tuning":
        raise ValueError("--camera-seeds adds camera views on the tuning part only (the held-out seeds are fixed)")
    if count < len(SEEDS[part]):
        raise ValueError(f"--camera-seeds must be at least {len(SEEDS[part])} (the part's own seeds)")
    return tuple(range(SEEDS[part][0], SEEDS[part][0] + count))


def build_part(
    part: Part, views_per_item: int = 5, limit: int | None = None, camera_seeds: int | None = None
) -> PartSets:
    photos = load_photos(limit)
    names = [name for name, _ in photos]
    wanted = set(names_in(names, part))
    backgrounds = load_backgrounds(names_in(background_names(), part))
    sets: dict[str, QuerySet] = {}
    for index, placement in enumerate(PLACEMENTS):
        frames: list[np.ndarray] = []
        items: list[np.ndarray] = []
        for seed in SEEDS[part]:
            data = build_heldup_set(
                views_per_item,
                seed * 10 + index,
                params=placement_params(placement),
                photos=photos,
                query_names=wanted,
                backgrounds=backgrounds,
            )
            frames += data.queries
            items.append(data.query_items)
        sets[placement] = QuerySet(frames, np.concatenate(items))
    camera: list[np.ndarray] = []
    camera_items: list[int] = []
    seeds = camera_seeds_of(part, camera_seeds)
    for seed in seeds:
        for position, (name, photo) in enumerate(photos):
            if name in wanted:
                camera += camera_views(photo, CAMERA_VIEWS, seed=seed * 1000 + position)
                camera_items += [position] * CAMERA_VIEWS
    sets["camera"] = QuerySet(camera, np.array(camera_items, dtype=np.int64))
    return PartSets(part, names, [photo for _, photo in photos], {name: sets[name] for name in SET_NAMES}, seeds)
