"""``visual-search model finetune`` and ``visual-search model finetune-eval`` (thin: parse, run, report)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from model.finetune.config import FinetuneConfig
from model.logs import setup_logging

log = logging.getLogger(__name__)

# flag → FinetuneConfig field; defaults and help come from the model, so they cannot drift.
_FLAGS = {
    "--backbone": "backbone",
    "--base-weights": "base_weights",
    "--epochs": "epochs",
    "--head-epochs": "head_epochs",
    "--unfreeze-blocks": "unfreeze_blocks",
    "--lr": "lr",
    "--backbone-lr-mult": "backbone_lr_mult",
    "--weight-decay": "weight_decay",
    "--batch-size": "batch_size",
    "--input-size": "input_size",
    "--metric-loss-weight": "metric_loss_weight",
    "--metric-temperature": "metric_temperature",
    "--label-smoothing": "label_smoothing",
    "--patience": "patience",
    "--val-fraction": "val_fraction",
    "--seed": "seed",
    "--num-workers": "num_workers",
    "--device": "device",
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fine-tune the featurizer on your own labelled product photos, export it (all variants) and compare"
        " retrieval before/after. Re-running with the same --out resumes from the last epoch's checkpoint."
    )
    parser.add_argument(
        "train",
        type=Path,
        help="a folder with one sub-folder per class, a SageMaker augmented manifest (.manifest/.jsonl) or an im2rec .lst",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics.json, plot, export")
    parser.add_argument("--val", type=Path, help="separate validation input (default: a stratified split of TRAIN)")
    parser.add_argument(
        "--holdout", type=Path, help="held-out labelled images for the before/after retrieval comparison"
    )
    parser.add_argument(
        "--image-root", type=Path, help="where manifest/.lst paths resolve (s3://bucket/key → ROOT/key)"
    )
    parser.add_argument("--label-attribute", help="manifest label attribute (default: the one non-metadata key)")
    parser.add_argument("--format", dest="fmt", default="auto", choices=["auto", "folder", "manifest", "lst"])
    fields = FinetuneConfig.model_fields
    for flag, name in _FLAGS.items():
        info = fields[name]
        annotation = info.annotation
        kind: type = str
        for candidate in (int, float):
            if annotation is candidate or annotation == (candidate | None):
                kind = candidate
        parser.add_argument(
            flag, dest=name, type=kind, default=None, help=f"{info.description} (default: {info.default})"
        )
    parser.add_argument("--no-augment", action="store_true", help="train on plain prepared images")
    parser.add_argument(
        "--variants", default="fp32,int8,fp16", help="exported variants, comma-separated (default: fp32,int8,fp16)"
    )
    parser.add_argument("--no-export", action="store_true", help="train only; export later by re-running without it")
    parser.add_argument("--restart", action="store_true", help="discard an existing checkpoint in --out and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def add_compare_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The before/after options; ``model eval`` can take them too (``run_compare_if_asked`` dispatches)."""
    group = parser.add_argument_group("before/after comparison of a fine-tuned featurizer")
    group.add_argument("--base", type=Path, required=required, help="base featurizer .onnx (with its sidecar)")
    group.add_argument("--finetuned", type=Path, required=required, help="fine-tuned featurizer .onnx")
    group.add_argument(
        "--holdout", type=Path, required=required, help="held-out labelled images: class folders, manifest or .lst"
    )
    group.add_argument("--holdout-image-root", type=Path, help="where holdout manifest/.lst paths resolve")
    group.add_argument("--holdout-label-attribute", help="holdout manifest label attribute")
    group.add_argument("--compare-json", type=Path, help="also write the comparison figures to this JSON file")


def register_eval(parser: argparse.ArgumentParser) -> None:
    parser.description = "Retrieval mAP and top-1 of a base and a fine-tuned featurizer on held-out labelled images."
    add_compare_arguments(parser, required=True)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_eval)


def run_compare_if_asked(args: argparse.Namespace) -> int | None:
    """For ``model eval``: run the comparison when ``--finetuned`` was given, else None (do the usual eval)."""
    if getattr(args, "finetuned", None) is None:
        return None
    if args.base is None or args.holdout is None:
        print("error: --finetuned needs --base and --holdout", file=sys.stderr)
        return 2
    return run_eval(args)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:  # a caller (a test, the hub) may have set up logging already
        setup_logging()


def run(args: argparse.Namespace) -> int:
    from model.finetune.checkpoint import CheckpointError
    from model.finetune.data.base import DatasetError
    from model.finetune.pipeline import Inputs, run_finetune

    _setup_logging()
    values = {name: getattr(args, name) for name in _FLAGS.values() if getattr(args, name) is not None}
    values["augment"] = not args.no_augment
    values["export_variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        config = FinetuneConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "config"
        print(f"error: {key}: {first['msg']}", file=sys.stderr)
        return 2
    inputs = Inputs(args.train, args.val, args.holdout, args.image_root, args.label_attribute, args.fmt)
    try:
        summary = run_finetune(
            config, inputs, args.out, restart=args.restart, export=not args.no_export, progress=not args.no_progress
        )
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, object]) -> None:
    from model.finetune.compare import format_comparison

    skipped = summary.get("skipped") or []
    assert isinstance(skipped, list)
    print(f"best epoch {summary['best_epoch']}: validation accuracy {summary['best_val_acc']:.4f}")
    print(f"checkpoint {summary['best_checkpoint']}; metrics {summary['metrics']}; plot {summary['plot']}")
    if skipped:
        print(f"skipped {len(skipped)} input(s):")
        for line in skipped[:20]:
            print(f"  {line}")
    for variant, path in dict(summary.get("exported") or {}).items():  # type: ignore[call-overload]
        print(f"exported {variant}: {path}")
    comparison = summary.get("comparison")
    if isinstance(comparison, dict):
        print(format_comparison(comparison))


def run_eval(args: argparse.Namespace) -> int:
    from model.finetune.compare import compare_models, format_comparison
    from model.finetune.data.base import DatasetError
    from model.finetune.pipeline import Inputs, load_input

    _setup_logging()
    try:
        progress = not getattr(args, "no_progress", False)
        inputs = Inputs(args.holdout, None, None, args.holdout_image_root, args.holdout_label_attribute)
        holdout = load_input(args.holdout, inputs, None, progress)
        result = compare_models({"base": args.base, "finetuned": args.finetuned}, holdout.samples, progress)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.compare_json:
        args.compare_json.write_text(json.dumps(result, indent=2) + "\n")
    print(format_comparison(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m model.finetune.cli`` works before the ``visual-search model finetune`` hook lands."""
    parser = argparse.ArgumentParser(prog="finetune")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub.add_parser("train", help="fine-tune, export, compare"))
    register_eval(sub.add_parser("eval", help="before/after retrieval comparison"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
