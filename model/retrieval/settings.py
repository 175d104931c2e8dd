"""The retrieval settings device and cloud must agree on, where they are recorded, and the check.

- pooling: part of the graph, so a different pooling is a different file hash and thus a different model id
  (``Sidecar.pooling`` records it by name as well).
- query regions: what the device featurizes of each frame (and whether it takes the whole frame when the crop is
  blank: :mod:`model.retrieval.frame_crop`); recorded in the sidecar under ``extra.retrieval.query_regions`` so
  every device running that model file applies the same ones.
- regions: the region vectors the graph pools from one inference (:mod:`model.retrieval.regions`); part of
  the graph and recorded in the sidecar under ``extra.retrieval.regions``.
- catalog views: which views of each catalog image the index holds and how (rows folded per item at search,
  or averaged into one row); recorded in the index manifest (``retrieval.catalog_views``). The default
  depends on the model (:func:`default_catalog_views`).

The index manifest also records the model's pooling and query regions at indexing time; a device model or a
photo-search model whose settings differ is refused naming the setting (:func:`check_compatible`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.contracts.errors import VisualSearchError
from model.prepare import Roi
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews
from model.retrieval.frame_crop import FrameCrop
from model.retrieval.query_regions import NO_REGIONS, QueryRegions
from model.retrieval.regions import SINGLE_REGION, Grid, RegionSet
from model.sidecar import Sidecar

DEFAULT_POOLING = "avg"
DEFAULT_QUERY_REGIONS = QueryRegions(kind="centre", scales=(0.6,), combine="first", blank_below=0.15)
DEFAULT_REGIONS = RegionSet(whole=False, grids=(Grid(n=2, cell=0.71),))
"""The export default chosen on the tuning part of the held-up evaluation (docs/match-quality.md): one inference
on the centre 0.6 of the frame's centre square (on the whole centre square when under 15 % of that crop's pixels
lie on an edge: :mod:`model.retrieval.frame_crop`), its feature map average-pooled over 2×2 overlapping windows
(0.71 of the map's side): four region vectors per frame in one wire-version-2 message, folded with max at search.
The catalog is indexed with :func:`default_catalog_views`: one row per item, the mean of the whole image's vector
and its centre crop's (what the device itself featurizes of a frame). Catalog adaptation (``catalog adapt``, a
projection head beside the index) is a per-catalog step."""


class SettingsMismatch(VisualSearchError, ValueError):
    """A model and an index were made with different retrieval settings."""


class RetrievalSettings(BaseModel):
    """All retrieval settings of one deployment (model + index)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pooling: str = Field(default="avg", description="Pooling in the model graph (sidecar 'pooling').")
    query_regions: QueryRegions = Field(default=NO_REGIONS, description="What the device featurizes per frame.")
    catalog_views: CatalogViews = Field(default=SINGLE_VIEW, description="Index rows per catalog item.")
    regions: RegionSet = Field(default=SINGLE_REGION, description="Region vectors per frame (one inference).")


_Setting = TypeVar("_Setting", QueryRegions, RegionSet)


def _recorded(sidecar: Sidecar, key: str, default: _Setting) -> _Setting:
    """The sidecar's ``extra.retrieval.<key>``, read as the type of ``default``; ``default`` when none is recorded
    (models exported before the setting existed). A bad value is a :class:`SettingsMismatch` naming its key."""
    raw = (sidecar.extra or {}).get("retrieval", {}).get(key)
    if raw is None:
        return default
    try:
        return type(default).model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsMismatch(f"sidecar of {sidecar.model_id}: extra.retrieval.{key}.{where}: {first['msg']}") from exc


def query_regions_of(sidecar: Sidecar) -> QueryRegions:
    """The sidecar's query regions (none recorded: the whole frame, as models exported before the setting existed)."""
    return _recorded(sidecar, "query_regions", NO_REGIONS)


def regions_of(sidecar: Sidecar) -> RegionSet:
    """The sidecar's region vectors (none recorded: the whole frame only)."""
    return _recorded(sidecar, "regions", SINGLE_REGION)


def settings_of(sidecar: Sidecar, views: CatalogViews = SINGLE_VIEW) -> RetrievalSettings:
    return RetrievalSettings(
        pooling=sidecar.pooling,
        query_regions=query_regions_of(sidecar),
        catalog_views=views,
        regions=regions_of(sidecar),
    )


def default_catalog_views(sidecar: Sidecar) -> CatalogViews:
    """``catalog index``'s default views for this model: the whole image and the device's own crop of it,
    averaged into one row (``full,<s>,mean``), when the model crops the frame's centre; one view otherwise.

    Chosen on the tuning part of the held-up evaluation (docs/match-quality.md): a camera view of a catalog photo
    seen through the device's centre crop shows the middle of the product, which the whole-image vector alone
    describes least. The search is unchanged (one row per item); indexing runs two inferences per image.
    """
    regions = query_regions_of(sidecar)
    roi = device_roi(regions)
    if roi is None or roi.w >= 1.0:
        return SINGLE_VIEW
    return CatalogViews(full=True, scales=(regions.scales[0],), combine="mean")


def manifest_section(sidecar: Sidecar, views: CatalogViews = SINGLE_VIEW) -> dict[str, Any]:
    """What the catalog indexer writes under ``retrieval`` in the index manifest."""
    return settings_of(sidecar, views).model_dump(mode="json")


def catalog_views_of(manifest_retrieval: Mapping[str, Any] | None) -> CatalogViews:
    """The manifest's catalog views (an index written before the setting existed holds one view per item)."""
    if not manifest_retrieval:
        return SINGLE_VIEW
    return CatalogViews.model_validate(manifest_retrieval.get("catalog_views") or {})


def check_compatible(sidecar: Sidecar, manifest_model_id: str, manifest_retrieval: Mapping[str, Any] | None) -> None:
    """Raise :class:`SettingsMismatch` when ``sidecar``'s model cannot query this index, naming the reason."""
    if sidecar.model_id != manifest_model_id:
        raise SettingsMismatch(
            f"model {sidecar.model_id} (pooling {sidecar.pooling}) differs from the index's model {manifest_model_id}:"
            " vectors of different models or pooling cannot be compared (re-export the device model or reindex)"
        )
    if not manifest_retrieval:
        return
    recorded = RetrievalSettings.model_validate(manifest_retrieval)
    mine = settings_of(sidecar, recorded.catalog_views)
    for key in ("pooling", "query_regions", "regions"):
        if getattr(mine, key) != getattr(recorded, key):
            raise SettingsMismatch(
                f"retrieval setting '{key}' differs: the model says {getattr(mine, key)!r}, the index was built for"
                f" {getattr(recorded, key)!r} (re-export the model with the index's settings or reindex)"
            )


def device_roi(regions: QueryRegions) -> Roi | None:
    """The single ROI that implements a one-inference centre crop in the device loop (None otherwise).

    A centred ROI of fraction ``s`` of each side, then ``prepare_frame``'s centre square, is the same pixels
    as the centre ``s`` of the frame's centre square, whatever the aspect ratio.
    """
    if regions.kind != "centre" or regions.batch != 1:
        return None
    scale = regions.scales[0]
    margin = (1.0 - scale) / 2.0
    return Roi(x=margin, y=margin, w=scale, h=scale)


def effective_crop(sidecar: Sidecar | None, user_roi: Roi | None) -> FrameCrop:
    """What the device featurizes of each frame: :func:`effective_roi`, or the user's ROI (the whole frame) when
    the model's crop of a frame is blank and the model asks for that (``query_regions.blank_below``)."""
    regions = query_regions_of(sidecar) if sidecar is not None else NO_REGIONS
    roi = effective_roi(sidecar, user_roi)
    below = regions.blank_below if device_roi(regions) is not None else None
    return FrameCrop(roi=roi, whole=user_roi, blank_below=below)


def effective_roi(sidecar: Sidecar | None, user_roi: Roi | None) -> Roi | None:
    """The ROI the device prepares: the model's centre crop (if its sidecar asks for one) inside the user's ROI.

    A user ROI says where the product appears; the model's crop then applies within it, the same way the
    held-up evaluation measured it on whole frames.
    """
    model_roi = device_roi(query_regions_of(sidecar)) if sidecar is not None else None
    if model_roi is None:
        return user_roi
    if user_roi is None:
        return model_roi
    return Roi(
        x=user_roi.x + user_roi.w * model_roi.x,
        y=user_roi.y + user_roi.h * model_roi.y,
        w=user_roi.w * model_roi.w,
        h=user_roi.h * model_roi.h,
    )
