"""``visual-search model eval --heldup``: every technique side by side, on the part of the split asked for.

Rows: the baseline, each technique and the chosen default, each scored on "anywhere" and "centred" held-up
views and on plain camera views, with the device's time per frame. Adaptation rows train on the catalog
itself (its images through :mod:`model.adapt`, never a query frame); their training vectors are cached per
model in ``--cache``. Defaults were chosen on ``--part tuning``; the reported table is ``--part heldout``
(docs/match-quality.md). ``make bench`` (section ``retrieval``) adds bytes per message and search time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from model.adapt.finetune import FinetuneSettings
from model.eval.heldup.evaluate import EvalModel, interleaved_frame_ms, item_scores, score_queries
from model.eval.heldup.sets import SET_NAMES, PartSets, build_part
from model.eval.heldup.split import SEEDS, Part
from model.retrieval.catalog_views import SINGLE_VIEW, CatalogViews
from model.retrieval.head import ProjectionHead
from model.retrieval.query_regions import NO_REGIONS, QueryRegions
from model.retrieval.regions import SINGLE_REGION, Grid, RegionSet
from model.retrieval.settings import DEFAULT_POOLING, DEFAULT_QUERY_REGIONS, DEFAULT_REGIONS

CENTRE_06 = QueryRegions(kind="centre", scales=(0.6,), combine="first")
GRID_2 = RegionSet(whole=False, grids=(Grid(n=2, cell=0.71),))
WHOLE_GRID_2 = RegionSet(grids=(Grid(n=2, cell=0.71),))
LATE_ITEMS = 8
"""Items left out of the adaptation and indexed afterwards through its head: what happens to new items."""
FINETUNE = FinetuneSettings()
"""The fine-tune row's settings (the defaults of :mod:`model.adapt.finetune`; none was tuned on held-out data)."""


@dataclass(frozen=True)
class ModelSpec:
    """An export under test; each set of settings gets its own folder under ``--models``."""

    backbone: str = "efficientnet-lite0"
    pooling: str = "avg"
    query_regions: QueryRegions = NO_REGIONS
    regions: RegionSet = SINGLE_REGION

    @property
    def key(self) -> str:
        text = f"{self.backbone}|{self.pooling}|{self.query_regions.model_dump_json()}|{self.regions.model_dump_json()}"
        return f"{self.backbone}-{self.pooling}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        crop = "whole frame" if self.query_regions == NO_REGIONS else self.query_regions.describe()
        return f"{self.backbone} {self.pooling}, {crop}"


@dataclass(frozen=True)
class Option:
    row: str
    """Short name for ``--rows``."""
    technique: str
    model: ModelSpec
    views: CatalogViews = SINGLE_VIEW
    adapt: Literal["none", "head", "finetune"] = "none"
    note: str = ""


BASELINE = ModelSpec()
PREVIOUS = ModelSpec(pooling="rgem", query_regions=CENTRE_06)
REGIONS = ModelSpec(query_regions=CENTRE_06, regions=GRID_2)
CHOSEN = ModelSpec(pooling=DEFAULT_POOLING, query_regions=DEFAULT_QUERY_REGIONS, regions=DEFAULT_REGIONS)
MEAN_VIEWS = CatalogViews(full=True, scales=(0.6,), combine="mean")
"""``catalog index``'s default for a model with the centre 0.6 crop (settings.default_catalog_views)."""
CHOSEN_VIEWS = MEAN_VIEWS
LITE2 = "efficientnet-lite2"

OPTIONS: tuple[Option, ...] = (
    Option("baseline", "baseline: average pooling, whole frame", BASELINE),
    Option("previous", "previous default: regional GeM + centre 0.6", PREVIOUS),
    Option(
        "views", "(d) catalog views 0.7/0.5 on the previous default", PREVIOUS, views=CatalogViews(scales=(0.7, 0.5))
    ),
    Option("regions", "(a) region vectors: 2×2 windows of the centre 0.6 map", REGIONS),
    Option("head-previous", "(b-i) projection head on the previous default", PREVIOUS, adapt="head"),
    Option("head-regions", "(b-i) projection head on region vectors", REGIONS, adapt="head"),
    Option(
        "finetune",
        f"(b-ii) last {FINETUNE.blocks} blocks fine-tuned ({FINETUNE.views_per_item} views/item, "
        f"{FINETUNE.epochs} epochs), region vectors",
        REGIONS,
        adapt="finetune",
        note="device model changes",
    ),
    Option("lite2", "(c) EfficientNet-Lite2, average pooling, whole frame", ModelSpec(backbone=LITE2)),
    Option("lite2-regions", "(c) EfficientNet-Lite2 region vectors", ModelSpec(LITE2, "avg", CENTRE_06, GRID_2)),
    Option(
        "regions-mean",
        "(e) region vectors, catalog vector = mean of the whole image and the device's crop",
        REGIONS,
        views=MEAN_VIEWS,
    ),
    Option("head-regions-mean", "(e) + projection head", REGIONS, views=MEAN_VIEWS, adapt="head"),
    Option("chosen", "chosen default (device model, no adaptation)", CHOSEN, views=CHOSEN_VIEWS),
    Option("chosen-head", "chosen default + catalog adaptation", CHOSEN, views=CHOSEN_VIEWS, adapt="head"),
    Option(
        "lite2-head",
        "(c) EfficientNet-Lite2 region vectors + head",
        ModelSpec(LITE2, "avg", CENTRE_06, GRID_2),
        adapt="head",
    ),
)
ROWS = tuple(option.row for option in OPTIONS)


def select(rows: Sequence[str] | None) -> tuple[Option, ...]:
    """The options named in ``rows`` (all when None), in table order; an unknown name is an error naming the known."""
    if not rows:
        return OPTIONS
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"--rows: unknown {', '.join(unknown)} (known: {', '.join(ROWS)})")
    return tuple(option for option in OPTIONS if option.row in rows)


@dataclass
class Result:
    option: Option
    model_name: str
    regions: str
    recall: dict[str, dict[int, float]]
    device_ms: float
    weak: list[str] = field(default_factory=list)
    adapt_s: float | None = None
    """Wall time of the adaptation: the head's training, or the whole fine-tune (views, training, export)."""
    key: str = ""
    """The loaded model it ran on (rows on one model share its device time)."""
    misses: list[str] = field(default_factory=list)
    """The chosen default's camera-view misses: which photo, which view, what came first instead."""


def ensure_model(models: Path, spec: ModelSpec, progress: bool = True) -> Path:
    from model.export.api import ensure_exported

    paths = ensure_exported(
        Path(models) / spec.key,
        ("int8",),
        backbone=spec.backbone,
        pooling=spec.pooling,
        query_regions=spec.query_regions,
        regions=spec.regions,
        progress=progress,
    )
    return paths["int8"]


def finetuned_model(models: Path, spec: ModelSpec, data: PartSets, progress: bool) -> tuple[Path, float]:
    """The backbone fine-tuned on this catalog (its images only), exported with int8 calibrated on its views;
    → (model path, wall seconds of the fine-tune, from its report when the export is already there)."""
    from model.adapt.finetune import finetune_catalog

    out = Path(models) / f"{spec.key}-finetuned"
    done, report_file = out / f"{spec.backbone}-int8.onnx", out / "finetune.json"
    if done.exists() and report_file.exists():
        return done, float(json.loads(report_file.read_text())["seconds"])
    path, report = finetune_catalog(
        data.catalog,
        out,
        backbone=spec.backbone,
        pooling=spec.pooling,
        query_regions=spec.query_regions,
        regions=spec.regions,
        settings=FINETUNE,
        progress=progress,
    )
    report_file.write_text(json.dumps(report, indent=2))
    return path, float(report["seconds"])


def train_head(
    model: EvalModel,
    data: PartSets,
    cache: Path,
    items: Sequence[int] | None = None,
    progress: bool = True,
    views: CatalogViews = SINGLE_VIEW,
) -> tuple[ProjectionHead, float]:
    """The catalog's head for this model (all items, or only ``items``), trained on the catalog images only, with
    the catalog vectors ``views`` makes (as ``catalog adapt`` trains on the index's own vectors)."""
    from model.adapt.pipeline import AdaptSettings, Vectorizer, adapt

    chosen = list(range(len(data.catalog))) if items is None else list(items)
    started = time.perf_counter()
    adapted = adapt(
        [data.names[i] for i in chosen],
        [data.catalog[i] for i in chosen],
        Vectorizer(model.featurizer, model.crop, views=views),
        AdaptSettings(),
        work_dir=_head_dir(cache / "adapt" / model.path.parent.name, views),
        progress=progress,
        before_after=False,
    )
    return adapted.head, time.perf_counter() - started


def _head_dir(base: Path, views: CatalogViews) -> Path:
    """One checkpoint per catalog-vector recipe, all sharing the model's featurized training views."""
    if views.combine != "mean":
        return base
    folder = base / f"catalog-{hashlib.sha1(views.model_dump_json().encode()).hexdigest()[:8]}"
    (base / "views").mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "views").exists():
        (folder / "views").symlink_to(Path("..") / "views")
    return folder


def score(
    data: PartSets, model: EvalModel, views: CatalogViews, head: ProjectionHead | None, only: set[int] | None = None
) -> dict[str, dict[int, float]]:
    catalog, owners = model.catalog(data.catalog, views)
    out = {}
    for name in SET_NAMES:
        query_set = data.sets[name]
        mask = np.ones(len(query_set.items), bool) if only is None else np.isin(query_set.items, sorted(only))
        queries = model.queries(query_set.frames)[mask]
        out[name] = score_queries(queries, query_set.items[mask], catalog, owners, len(data.catalog), head)
    return out


def weak_items(
    data: PartSets, model: EvalModel, views: CatalogViews, head: ProjectionHead | None, below: float = 0.6
) -> list[str]:
    """Photos whose "anywhere" recall@1 is under ``below``: the weak rows behind the headline."""
    weak = []
    for item in sorted(set(data.sets["anywhere"].items.tolist())):
        r1 = score(data, model, views, head, {item})["anywhere"][1]
        if r1 < below:
            weak.append(f"{data.names[item]} {r1:.2f}")
    return weak


def misses(
    data: PartSets, model: EvalModel, views: CatalogViews, head: ProjectionHead | None, set_name: str = "camera"
) -> list[str]:
    """Every query of ``set_name`` whose first item is wrong: "photo (seed, view) → the item that came first"."""
    query_set = data.sets[set_name]
    catalog, owners = model.catalog(data.catalog, views)
    q, c = model.queries(query_set.frames), catalog
    if head is not None:
        q = head.project(q.reshape(-1, q.shape[-1])).reshape(q.shape[0], q.shape[1], -1)
        c = head.project(catalog)
    first = item_scores(np.einsum("qrd,nd->qrn", q, c).max(axis=1), owners, len(data.names)).argmax(axis=1)
    out = []
    for position in np.flatnonzero(first != query_set.items):
        item, seed, view = _query_origin(data, set_name, int(position))
        out.append(f"{data.names[item]} (seed {seed}, view {view}) → {data.names[int(first[position])]}")
    return out


def _query_origin(data: PartSets, set_name: str, position: int) -> tuple[int, int, int]:
    """(item, seed, view number of that item within its seed) of one query, from the set's recorded order."""
    items = data.sets[set_name].items
    seeds = data.camera_seeds if set_name == "camera" and data.camera_seeds else SEEDS[data.part]
    per_seed = len(items) // len(seeds)
    seed_index, item = position // per_seed, int(items[position])
    start = seed_index * per_seed
    return item, seeds[seed_index], int((items[start:position] == item).sum())


def late_items(data: PartSets) -> list[int]:
    """The items added "after" adaptation: the first of the part's photos by name hash (fixed, not chosen)."""
    scored = sorted(
        set(data.sets["anywhere"].items.tolist()), key=lambda i: hashlib.sha1(data.names[i].encode()).hexdigest()
    )
    return scored[:LATE_ITEMS]


def run_heldup(
    models: Path,
    part: Part = "heldout",
    backend: str = "auto",
    threads: int | None = None,
    cache: Path = Path(".cache/heldup-eval"),
    progress: bool = True,
    options: Sequence[Option] = OPTIONS,
    time_frames: int = 20,
    echo: Callable[[str], None] = print,
    late: bool = True,
    camera_seeds: int | None = None,
) -> tuple[list[Result], dict[str, object] | None]:
    """Score every option on ``part``; also what happens to items added after adaptation (the chosen default).
    ``camera_seeds``: more camera views on the tuning part (:func:`~model.eval.heldup.sets.camera_seeds_of`)."""
    data = build_part(part, camera_seeds=camera_seeds)
    echo(f"# {data.describe()}")
    loaded: dict[str, EvalModel] = {}
    timing: dict[str, float] = {}
    heads: dict[str, tuple[ProjectionHead, float]] = {}
    finetune_s: dict[str, float] = {}
    frames = data.sets["anywhere"].frames[:: max(1, len(data.sets["anywhere"].frames) // time_frames)][:time_frames]
    results = []
    for option in options:
        key = option.model.key + ("-finetuned" if option.adapt == "finetune" else "")
        head, seconds = None, None
        if key not in loaded:
            if option.adapt == "finetune":
                path, finetune_s[key] = finetuned_model(models, option.model, data, progress)
            else:
                path = ensure_model(models, option.model, progress)
            loaded[key] = EvalModel(path, cache / "vectors", backend, threads)
        model = loaded[key]
        if option.adapt == "head":
            head_key = f"{key}|{option.views.model_dump_json()}"
            if head_key not in heads:
                heads[head_key] = train_head(model, data, cache, progress=progress, views=option.views)
            head, seconds = heads[head_key]
        seconds = finetune_s.get(key, seconds)
        recall = score(data, model, option.views, head)
        chosen = option.model == CHOSEN
        weak = weak_items(data, model, option.views, head) if chosen else []
        missed = misses(data, model, option.views, head) if chosen else []
        results.append(
            Result(option, model.name, model.regions.describe(), recall, float("nan"), weak, seconds, key, missed)
        )
        # Each row as soon as it is scored, so an interrupted run still leaves its finished rows.
        echo(table_row(results[-1], float("nan")))
    # Device time last, every model in turns on the same frames: the ratios hold on a shared machine.
    for key, ms in zip(loaded, interleaved_frame_ms(list(loaded.values()), frames), strict=True):
        timing[key] = ms
    for result in results:
        result.device_ms = timing[result.key]
    return results, late_item_figures(data, loaded, heads, models, cache, progress) if late else None


def late_item_figures(
    data: PartSets,
    loaded: dict[str, EvalModel],
    heads: dict[str, tuple[ProjectionHead, float]],
    models: Path,
    cache: Path,
    progress: bool,
) -> dict[str, object]:
    """Adapt without ``LATE_ITEMS`` items, index them afterwards through that head: their recall, and the others'."""
    model = loaded.get(CHOSEN.key) or EvalModel(ensure_model(models, CHOSEN, progress), cache / "vectors")
    late = late_items(data)
    early = [i for i in range(len(data.catalog)) if i not in late]
    partial, seconds = train_head(model, data, cache / "without-late", early, progress, CHOSEN_VIEWS)
    full = heads.get(f"{CHOSEN.key}|{CHOSEN_VIEWS.model_dump_json()}", (None, 0.0))[0]
    views = CHOSEN_VIEWS
    return {
        "late_items": [data.names[i] for i in late],
        "no adaptation": score(data, model, views, None, set(late)),
        "head trained without them": score(data, model, views, partial, set(late)),
        "head trained with them": score(data, model, views, full, set(late)) if full is not None else None,
        "others, head trained without the late items": score(data, model, views, partial, set(early)),
        "seconds": seconds,
    }


def print_results(
    results: Sequence[Result], late: dict[str, object] | None, title: str, echo: Callable[[str], None] = print
) -> None:
    """The markdown tables printed in docs/match-quality.md."""
    echo(f"\n### {title}")
    header = ["technique", "model", "regions", "catalog", "adapted"]
    header += [f"{name} R@{k}" for name in SET_NAMES for k in (1, 5)]
    header += ["device ms/frame", "× first row"]
    echo("| " + " | ".join(header) + " |")
    echo("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        echo(table_row(r, results[0].device_ms))
    for r in results:
        if r.weak:
            echo(f"\nWeak items ({r.option.technique}, anywhere R@1 < 0.6): {', '.join(r.weak)}")
        if r.misses:
            echo(f"\nCamera-view misses ({r.option.technique}): {'; '.join(r.misses)}")
    if late is not None:
        print_late(late, echo)


def table_row(r: Result, first_ms: float) -> str:
    cells = [r.option.technique, r.option.model.describe(), r.regions, r.option.views.describe()]
    cells.append(f"{r.option.adapt} ({r.adapt_s:.0f} s)" if r.adapt_s is not None else "—")
    cells += [f"{r.recall[name][k]:.3f}" for name in SET_NAMES for k in (1, 5)]
    cells += [f"{r.device_ms:.1f}", f"{r.device_ms / first_ms:.2f}"]
    return "| " + " | ".join(cells) + " |"


def print_late(late: dict[str, object], echo: Callable[[str], None] = print) -> None:
    echo(f"\n### Items added after adaptation ({', '.join(late['late_items'])})")  # type: ignore[arg-type]
    echo(f"(chosen default's model; the head without them trained in {late['seconds']:.0f} s)")
    echo("| queries of | head | " + " | ".join(f"{name} R@1" for name in SET_NAMES) + " |")
    echo("|---|---|" + "|".join("---" for _ in SET_NAMES) + "|")
    for label, who, head in (
        ("no adaptation", "late items", "none"),
        ("head trained without them", "late items", "trained without them"),
        ("head trained with them", "late items", "trained with them"),
        ("others, head trained without the late items", "the other items", "trained without the late items"),
    ):
        figures = late.get(label)
        if figures:
            echo(f"| {who} | {head} | " + " | ".join(f"{figures[name][1]:.3f}" for name in SET_NAMES) + " |")  # type: ignore[index]
