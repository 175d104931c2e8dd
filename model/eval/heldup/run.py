"""``visual-search model eval --heldup``: the held-up table — baseline vs each technique vs the chosen default.

Rows use the exported int8 models on the real runtime (what the device runs): one export per pooling under
test (``efficientnet-lite0-<pooling>-int8.onnx``, made by :func:`model.eval.heldup.exports.export_pooled` when
missing; ``avg`` is the earlier whole-frame baseline, ``rgem`` carries the chosen query crop like the default export).
``--torch-pooling`` adds fp32 torch rows for every pooling (cheap: one backbone pass, then reductions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.eval.heldup.evaluate import (
    SEARCH_ITEMS,
    FeatureMaps,
    OnnxEmbedder,
    PreparedEmbedder,
    RawPixels,
    Row,
    TorchPooling,
    device_frame_ms,
    index_mb,
    print_rows,
    score_option,
    search_ms,
)
from model.eval.heldup.views import build_heldup_set
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews
from model.retrieval.query_regions import NO_REGIONS, QueryRegions
from model.retrieval.settings import DEFAULT_POOLING, DEFAULT_QUERY_REGIONS

log = logging.getLogger(__name__)

BACKBONE = "efficientnet-lite0"
CENTRE_07 = QueryRegions(kind="centre", scales=(0.7,), combine="first")
CENTRE_06 = QueryRegions(kind="centre", scales=(0.6,), combine="first")
CENTRE_05 = QueryRegions(kind="centre", scales=(0.5,), combine="first")

CHOSEN_POOLING = DEFAULT_POOLING
CHOSEN_REGIONS = DEFAULT_QUERY_REGIONS
CHOSEN_VIEWS = SINGLE_VIEW
"""The default this evaluation chose (docs/match-quality.md): regional GeM + the centre 0.6 crop, one view per item."""


@dataclass(frozen=True)
class Option:
    technique: str
    pooling: str
    views: CatalogViews = SINGLE_VIEW
    regions: QueryRegions = NO_REGIONS
    note: str = ""


OPTIONS: tuple[Option, ...] = (
    Option("baseline (avg, whole frame)", "avg"),
    Option("pooling: GeM p=3", "gem"),
    Option("pooling: R-MAC", "rmac"),
    Option("pooling: regional GeM", "rgem"),
    Option("catalog: +flip", "avg", views=CatalogViews(flip=True)),
    Option("catalog: crops 0.7/0.5", "avg", views=CatalogViews(scales=(0.7, 0.5))),
    Option("catalog: crops 0.7/0.5 ×4 +flip", "avg", views=CatalogViews(scales=(0.7, 0.5), grid=2, flip=True)),
    Option("query: centre crop 0.7", "avg", regions=CENTRE_07),
    Option("query: centre crop 0.6", "avg", regions=CENTRE_06),
    Option("query: centre crop 0.5", "avg", regions=CENTRE_05, note="assumes a well-centred product"),
    Option("query: saliency box", "avg", regions=QueryRegions(kind="saliency", combine="first")),
    Option("query: full + centre 0.6, mean", "avg", regions=QueryRegions(kind="centre", scales=(1.0, 0.6))),
    Option("rgem + centre 0.6 + crops 0.7/0.5", "rgem", views=CatalogViews(scales=(0.7, 0.5)), regions=CENTRE_06),
    Option("chosen default", CHOSEN_POOLING, views=CHOSEN_VIEWS, regions=CHOSEN_REGIONS),
)


def model_file(models: Path, pooling: str) -> Path:
    # Every pooling under test has its own file (avg too): the default-named export is the deployed default.
    return Path(models) / f"{BACKBONE}-{pooling}-int8.onnx"


def ensure_pooling_models(models: Path, poolings: Sequence[str], progress: bool = True) -> dict[str, Path]:
    """Pooling → int8 model path, exporting what is missing (avg: the standard export)."""
    from model.eval.heldup.exports import export_pooled
    from model.sidecar import SidecarError, read_sidecar

    out: dict[str, Path] = {}
    for pooling in dict.fromkeys(poolings):
        path = model_file(models, pooling)
        try:
            valid = path.exists() and read_sidecar(path).pooling == pooling
        except SidecarError:
            valid = False
        if not valid:
            log.info("exporting %s with %s pooling into %s", BACKBONE, pooling, models)
            regions = CHOSEN_REGIONS if pooling == CHOSEN_POOLING else NO_REGIONS
            export_pooled(pooling, models, BACKBONE, ("int8",), query_regions=regions)
        out[pooling] = path
    return out


def run_heldup(
    models: Path,
    views_per_item: int = 5,
    seed: int = 0,
    backend: str = "auto",
    threads: int | None = None,
    torch_pooling: bool = False,
    finetuned: Path | None = None,
    time_frames: int = 20,
    progress: bool = True,
) -> list[Row]:
    from tqdm import tqdm

    data = build_heldup_set(views_per_item, seed)
    paths = ensure_pooling_models(models, [o.pooling for o in OPTIONS], progress)
    embedders: dict[str, OnnxEmbedder] = {p: OnnxEmbedder(path, backend, threads) for p, path in paths.items()}
    timing_frames = data.queries[:: max(1, len(data.queries) // time_frames)][:time_frames]
    cache: dict[tuple[str, str], tuple[object, object]] = {}
    rows: list[Row] = []
    raw = RawPixels()
    r1, r5, n = score_option(data, raw)
    rows.append(Row("raw-pixel baseline", raw.name, "1 view", "whole frame", r1, r5, n, index_mb(n, raw.dim)))
    timed: dict[tuple[str, str], float] = {}
    searched: dict[int, float] = {}
    for option in tqdm(OPTIONS, desc="held-up eval", disable=not progress, leave=False):
        embedder = embedders[option.pooling]
        r1, r5, n = score_option(data, embedder, option.views, option.regions, cache)  # type: ignore[arg-type]
        key = (option.pooling, option.regions.model_dump_json())
        if key not in timed:
            timed[key] = device_frame_ms(embedder.path, option.regions, timing_frames, backend, threads)
        rows.append(
            Row(
                option.technique,
                embedder.name + f" ({embedder.featurizer.backend_info.backend})",
                option.views.describe(),
                option.regions.describe(),
                r1,
                r5,
                n,
                index_mb(n, embedder.dim),
                timed[key],
                option.note,
                {
                    "search_ms": searched.setdefault(option.views.count, search_ms(embedder.dim, option.views)),
                    "index_mb_10k": index_mb(SEARCH_ITEMS * option.views.count, embedder.dim),
                },
            )
        )
    if finetuned is not None:
        tuned = OnnxEmbedder(finetuned, backend, threads)
        for technique, regions in (("fine-tuned", NO_REGIONS), ("fine-tuned + centre 0.6", CHOSEN_REGIONS)):
            r1, r5, n = score_option(data, tuned, SINGLE_VIEW, regions)
            ms = device_frame_ms(tuned.path, regions, timing_frames, backend, threads)
            rows.append(Row(technique, tuned.name, "1 view", regions.describe(), r1, r5, n, index_mb(n, tuned.dim), ms))
    if torch_pooling:
        maps = FeatureMaps(BACKBONE)
        for pooling in ("avg", "gem", "max", "rmac", "rgem"):
            for regions in (NO_REGIONS, CENTRE_06):
                torch_embedder: PreparedEmbedder = TorchPooling(maps, pooling)
                r1, r5, n = score_option(data, torch_embedder, SINGLE_VIEW, regions)
                rows.append(
                    Row(
                        f"torch pooling: {pooling}",
                        torch_embedder.name,
                        "1 view",
                        regions.describe(),
                        r1,
                        r5,
                        n,
                        index_mb(n, torch_embedder.dim),
                        note="choice only (fp32 torch)",
                    )
                )
    return rows


def print_heldup(rows: Sequence[Row], views_per_item: int, seed: int, items: int | None = None) -> None:
    print_rows(rows, f"held-up objects: {views_per_item} held-up views per catalog photo, seed {seed}")
