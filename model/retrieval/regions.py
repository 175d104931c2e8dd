"""Region vectors: several vectors of one frame from one inference (the feature map pooled over regions).

A product held anywhere in the frame covers only part of it; a vector pooled over the whole frame averages
the product with the room. Pooling the *same* feature map over a few sub-regions as well costs a few
reductions on a 7×7 map, not another inference. The device sends all region vectors in one version-2 wire
message; the search scores each against the catalog and keeps every item's best (max over regions).

Regions are given as fractions of the map, so one setting means the same for any input size: optionally the
whole map first, then per grid ``n × n`` square windows of side ``cell`` × the map side, spread evenly from
corner to corner. The model's ``embedding`` output stays the whole-map vector whatever the regions, so a
reader of the single vector (wire version 1, the photo search of an older index) gets what it always got.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

REGIONS_OUTPUT = "regions"
"""The model output holding the region vectors: float32 ``[N, R, D]``, each row L2-normalized."""


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, le=4, description="Windows per axis (n × n windows).")
    cell: float = Field(gt=0.0, le=1.0, description="Window side as a fraction of the feature map's side.")


class RegionSet(BaseModel):
    """Which regions of the feature map become vectors. Recorded in the sidecar (``extra.retrieval.regions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    whole: bool = Field(default=True, description="The whole map as region 0.")
    grids: tuple[Grid, ...] = Field(default=(), description="Grids of windows (after the whole map, if any).")

    @model_validator(mode="after")
    def _not_empty(self) -> RegionSet:
        if self.count < 1:
            raise ValueError("a region set needs the whole map or at least one grid")
        return self

    @property
    def count(self) -> int:
        return int(self.whole) + sum(g.n * g.n for g in self.grids)

    @property
    def is_single(self) -> bool:
        return self.count == 1

    def describe(self) -> str:
        if self.is_single:
            return "whole frame"
        parts = (["whole"] if self.whole else []) + [f"{g.n}×{g.n} of {g.cell:.2g}" for g in self.grids]
        return f"{self.count} regions ({' + '.join(parts)})"


SINGLE_REGION = RegionSet()


def parse_regions(text: str) -> RegionSet:
    """``--regions``: ``1`` (whole frame only), or a comma list of ``whole`` and ``NxC`` grids (n × n windows of
    side C of the map), e.g. ``whole,2x0.71`` or ``3x0.43``. Raises ValueError naming the bad token."""
    tokens = [t.strip().lower() for t in text.split(",") if t.strip()]
    if tokens in ([], ["1"], ["whole"]):
        return SINGLE_REGION
    grids = []
    whole = "whole" in tokens
    for token in (t for t in tokens if t != "whole"):
        n, _, cell = token.partition("x")
        try:
            grids.append(Grid(n=int(n), cell=float(cell)))
        except ValueError:
            raise ValueError(
                f"--regions: {token!r} is not a grid like 2x0.71 (n × n windows of 0.71 of the map)"
            ) from None
    try:
        return RegionSet(whole=whole, grids=tuple(grids))
    except ValueError as exc:
        raise ValueError(f"--regions {text!r}: {exc}") from None


def region_boxes(height: int, width: int, regions: RegionSet) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of every region on an ``height × width`` map, in the set's order."""
    boxes = [(0, height, 0, width)] if regions.whole else []
    for grid in regions.grids:
        side_y = max(1, min(height, round(grid.cell * height)))
        side_x = max(1, min(width, round(grid.cell * width)))
        ys = np.linspace(0, height - side_y, grid.n).round().astype(int) if grid.n > 1 else [(height - side_y) // 2]
        xs = np.linspace(0, width - side_x, grid.n).round().astype(int) if grid.n > 1 else [(width - side_x) // 2]
        boxes += [(int(y), int(y) + side_y, int(x), int(x) + side_x) for y in ys for x in xs]
    return boxes
