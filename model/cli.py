"""``visual-search model export|info|eval``: thin entry points over :mod:`model.export`, the runtime and eval."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from model.contracts.model_file import VARIANTS
from model.retrieval.regions import RegionSet, parse_regions

POOLINGS = ("avg", "gem", "max", "rmac", "rgem")
"""model.export.graph.POOLINGS, spelled out: importing it here would pull torch into every CLI start."""

log = logging.getLogger(__name__)


def _variants(text: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in items if v not in VARIANTS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"variants must be a comma list of {', '.join(VARIANTS)}; got {text!r}")
    return items


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True
    _add_export(sub.add_parser("export", help="export a backbone to ONNX variants with sidecars and parity figures"))
    _add_info(sub.add_parser("info", help="print a model's sidecar and the backend that would run it"))
    evaluate = sub.add_parser("eval", help="retrieval-quality tables for every variant vs a raw-pixel baseline")
    _add_eval(evaluate)
    try:
        from model.finetune.cli import add_compare_arguments
        from model.finetune.cli import register as register_finetune
    except ImportError:  # no torch here (a device install): fine-tuning is an offline tool
        pass
    else:
        add_compare_arguments(evaluate)
        register_finetune(sub.add_parser("finetune", help="fine-tune on your own labelled catalog, export, compare"))


def _fraction(option: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {text!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"{option}: {text} is not a fraction in [0, 1]")
        return value

    return parse


def _add_export(export: argparse.ArgumentParser) -> None:
    from model.retrieval.settings import DEFAULT_POOLING, DEFAULT_QUERY_REGIONS, DEFAULT_REGIONS

    crop = DEFAULT_QUERY_REGIONS.scales[0] if DEFAULT_QUERY_REGIONS.kind == "centre" else 1.0
    export.add_argument("--backbone", default="efficientnet-lite0", help="backbone name (default: %(default)s)")
    export.add_argument("--out", type=Path, default=Path("artifacts/models"), help="output folder")
    export.add_argument(
        "--variants", type=_variants, default=["fp32", "int8", "fp16"], help="comma list of fp32,int8,fp16"
    )
    export.add_argument("--weights", type=Path, default=None, help="state_dict file (default: packaged weights)")
    export.add_argument(
        "--pooling",
        choices=list(POOLINGS),
        default=DEFAULT_POOLING,
        help="pooling at the cut: avg, gem, max, rmac, rgem (default %(default)s; docs/match-quality.md)",
    )
    export.add_argument(
        "--query-crop",
        type=float,
        default=crop,
        help="the device featurizes the centre FRACTION of each frame's centre square (default %(default)s;"
        " 1 = the whole square); stamped into the model file and its sidecar",
    )
    export.add_argument(
        "--blank-below",
        type=_fraction("--blank-below"),
        default=DEFAULT_QUERY_REGIONS.blank_below or 0.0,
        help="with a query crop: the device featurizes the whole frame instead when fewer than this FRACTION of"
        " the crop's pixels lie on an edge (default %(default)s; 0 = always the crop; docs/match-quality.md)",
    )
    export.add_argument(
        "--regions",
        type=_regions,
        default=DEFAULT_REGIONS,
        help="region vectors pooled from one inference: 1 (one vector), or a comma list of 'whole' and NxC grids"
        f" (n × n windows of side C of the map); default {_regions_text(DEFAULT_REGIONS)}",
    )
    export.add_argument("--calibration-images", type=int, default=96, help="int8 calibration frames (with --force)")
    export.add_argument("--force", action="store_true", help="export even when valid files already exist")
    try:
        from model.mxnet import cli as mxnet_cli
    except ImportError:  # a device install has no onnx; export is an offline tool anyway
        pass
    else:
        mxnet_cli.add_arguments(export)
    export.set_defaults(handler=run_export)


def _regions(text: str) -> RegionSet:
    try:
        return parse_regions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _regions_text(regions: RegionSet) -> str:
    if regions.is_single:
        return "1"
    return ",".join((["whole"] if regions.whole else []) + [f"{g.n}x{g.cell:g}" for g in regions.grids])


def _add_info(info: argparse.ArgumentParser) -> None:
    info.add_argument("file", type=Path, help="an exported .onnx file")
    info.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino"])
    info.add_argument("--device", default="auto", help="backend device (cpu, cuda, tensorrt; CPU, GPU, NPU)")
    info.add_argument("--threads", type=int, default=None, help="inference threads (as the device would run)")
    info.add_argument(
        "--backend-cache",
        type=Path,
        default=None,
        help="auto's measured-choice cache (default: the device's; see docs/edge.md) — shows what auto would run",
    )
    info.add_argument("--remeasure", action="store_true", help="auto: time every backend now and cache the result")
    info.set_defaults(handler=run_info)


def _add_eval(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("--models", type=Path, default=Path("artifacts/models"), help="folder of exported models")
    evaluate.add_argument("--backbone", default=None, help="only this backbone's files")
    evaluate.add_argument("--backend", default="onnxruntime", choices=["auto", "onnxruntime", "openvino"])
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.add_argument("--fashion", type=int, default=2000, help="Fashion-MNIST images (0 skips)")
    evaluate.add_argument("--views", type=int, default=5, help="camera-like views per photo")
    evaluate.add_argument(
        "--heldup",
        action="store_true",
        help="the held-up-object eval instead: baseline vs region vectors / catalog adaptation / Lite2 / catalog"
        " views on 'anywhere', 'centred', 'aside' and camera views (exports the models it needs into --models)",
    )
    evaluate.add_argument(
        "--part",
        choices=["heldout", "tuning"],
        default="heldout",
        help="--heldup: which part of the recorded split to score (choices are made on 'tuning' only)",
    )
    evaluate.add_argument(
        "--cache", type=Path, default=Path(".cache/heldup-eval"), help="--heldup: cached vectors and adaptations"
    )
    evaluate.add_argument(
        "--rows",
        default=None,
        help="--heldup: comma-separated rows to score (default all: baseline, previous, views, regions,"
        " head-previous, head-regions, finetune, lite2, lite2-regions, chosen, chosen-head, lite2-head)",
    )
    evaluate.add_argument(
        "--no-late", action="store_true", help="--heldup: skip the items-added-after-adaptation table"
    )
    evaluate.add_argument(
        "--camera-seeds",
        type=int,
        default=None,
        help="--heldup --part tuning: camera views of this many seeds (default: the part's 2) to tell settings apart",
    )
    evaluate.add_argument(
        "--blank-sweep",
        default=None,
        help="--heldup: instead of the rows, score the chosen default with each of these comma-separated"
        " blank_below thresholds (0 = off): when the device takes the whole frame instead of its crop",
    )
    evaluate.set_defaults(handler=run_eval)


def run_export(args: argparse.Namespace) -> int:
    if getattr(args, "mxnet", None):
        from model.mxnet import cli as mxnet_cli

        return mxnet_cli.run_export(args)
    from model.export.api import ensure_exported, export_model
    from model.retrieval.query_regions import NO_REGIONS, QueryRegions

    try:
        if args.query_crop >= 1.0:
            regions = NO_REGIONS
        else:
            blank = args.blank_below or None
            regions = QueryRegions(kind="centre", scales=(args.query_crop,), combine="first", blank_below=blank)
        if args.force:
            paths = export_model(
                args.backbone,
                args.out,
                variants=args.variants,
                weights=args.weights,
                pooling=args.pooling,
                calibration_images=args.calibration_images,
                query_regions=regions,
                regions=args.regions,
            )
        else:
            paths = ensure_exported(
                args.out,
                args.variants,
                backbone=args.backbone,
                weights=args.weights,
                pooling=args.pooling,
                progress=True,
                query_regions=regions,
                regions=args.regions,
            )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from model.sidecar import read_sidecar

    for variant, path in paths.items():
        sidecar = read_sidecar(path)
        figures = "; ".join(
            f"vs {p.reference}: cos min {p.cosine_min:.5f} mean {p.cosine_mean:.5f}"
            + (f" NN agree {p.nn_agreement:.3f}" if p.nn_agreement is not None else "")
            for p in sidecar.parity
        )
        print(f"{variant}: {path} ({path.stat().st_size / 1e6:.1f} MB) {sidecar.model_id} — {figures}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from model.featurizer import Featurizer
    from model.runtime.base import BackendUnavailable
    from model.sidecar import SidecarError, read_sidecar

    try:
        if not args.file.exists():
            raise FileNotFoundError(f"model file {args.file} does not exist")
        sidecar = read_sidecar(args.file)
        print(json.dumps(sidecar.model_dump(mode="json"), indent=2))
        if args.remeasure:
            from model.runtime.choice_cache import ChoiceCache

            ChoiceCache(args.backend_cache).forget(sidecar.model_id)
        fz = Featurizer(
            args.file,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            warmup=0,
            choice_cache=args.backend_cache,
        )
    except (FileNotFoundError, SidecarError, BackendUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    choice = fz.backend_choice
    print(f"backend: {fz.backend_info.describe()}")
    print(f"chosen: {choice.how} — {choice.reason}")
    for label, ms in sorted(choice.measured_ms.items(), key=lambda item: item[1]):
        mark = "  <- runs" if label == f"{choice.backend}/{choice.device}" else ""
        print(f"  {label:<28} {ms:8.2f} ms{mark}")
    for label, error in sorted(choice.skipped.items()):
        print(f"  {label:<28} skipped: {error}")
    return 0


def run_blank_sweep(args: argparse.Namespace) -> int:
    from model.eval.heldup.blank_sweep import blank_sweep, parse_thresholds
    from model.eval.heldup.sets import camera_seeds_of

    try:
        thresholds = parse_thresholds(args.blank_sweep)
        camera_seeds_of(args.part, args.camera_seeds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"# model eval --heldup --part {args.part} --blank-sweep {args.blank_sweep} — {args.models}")
    blank_sweep(args.models, args.part, thresholds, args.backend, args.threads, args.cache, args.camera_seeds)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.heldup and args.blank_sweep is not None:
        return run_blank_sweep(args)
    if args.heldup:
        from model.eval.heldup.run import print_results, run_heldup, select
        from model.eval.heldup.sets import camera_seeds_of

        try:  # refuse a bad --rows or --camera-seeds before any work, naming the option
            options = select(args.rows.split(",") if args.rows else None)
            camera_seeds_of(args.part, args.camera_seeds)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"# model eval --heldup --part {args.part} --rows {','.join(o.row for o in options)} — {args.models}")
        results, late = run_heldup(
            args.models,
            args.part,
            args.backend,
            args.threads,
            args.cache,
            options=options,
            late=not args.no_late,
            camera_seeds=args.camera_seeds,
        )
        print_results(results, late, f"held-up objects, {args.part} part")
        return 0
    if getattr(args, "finetuned", None):
        from model.finetune.cli import run_compare_if_asked

        compared = run_compare_if_asked(args)
        if compared is not None:
            return compared
    from model.eval.run import evaluate, find_models, print_tables

    models = find_models(args.models, args.backbone)
    if not models:
        print(f"error: no exported models in {args.models} (run `visual-search model export`)", file=sys.stderr)
        return 2
    print(f"# model eval — {', '.join(p.name for p in models)} on {args.backend}")
    print_tables(
        evaluate(
            models, backend=args.backend, threads=args.threads, fashion_count=args.fashion, views_per_photo=args.views
        )
    )
    return 0
