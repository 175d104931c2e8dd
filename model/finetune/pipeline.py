"""One fine-tuning run end to end: read → validate → split → train → export → compare."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.backbones import get_backbone
from model.finetune import checkpoint
from model.finetune.config import FinetuneConfig
from model.finetune.data.base import DatasetError, LabelledSet, Sample, read_source
from model.finetune.data.split import Split, data_hash, given_split, stratified_split
from model.finetune.data.validate import ImageCheck, validate_images
from model.finetune.trainer import Trainer, TrainResult, build_net
from model.finetune.weights import write_backbone_weights
from model.logs import log_event
from model.sidecar import read_sidecar, write_sidecar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    train: Path
    val: Path | None = None
    holdout: Path | None = None
    image_root: Path | None = None
    label_attribute: str | None = None
    fmt: str = "auto"


def load_input(path: Path, inputs: Inputs, check: ImageCheck | None, progress: bool) -> LabelledSet:
    raw = read_source(path, inputs.image_root, inputs.label_attribute, inputs.fmt)
    checked = validate_images(raw, check, progress)
    for problem in checked.problems:
        log_event(log, "input_skipped", logging.WARNING, where=problem.where, reason=problem.reason)
    if not checked.samples:
        raise DatasetError(f"{path}: no usable images ({len(checked.problems)} skipped; see the report)")
    return checked


def prepare_split(
    config: FinetuneConfig, inputs: Inputs, check: ImageCheck | None, progress: bool
) -> tuple[Split, list[str]]:
    train = load_input(inputs.train, inputs, check, progress)
    problems = [str(p) for p in train.problems]
    if inputs.val is None:
        return stratified_split(train.samples, config.val_fraction, config.seed), problems
    val = load_input(inputs.val, inputs, check, progress)
    return given_split(train.samples, val.samples), problems + [str(p) for p in val.problems]


CALIBRATION_FRAMES = 96


def calibration_frames(samples: list[Sample], size: int, seed: int, count: int = CALIBRATION_FRAMES) -> np.ndarray:
    """int8 calibration from the user's own training images: each image prepared as-is, then camera-like views
    of them, ``count`` frames in all (the fine-tuned network's activations on *these* images set the ranges)."""
    import cv2

    from model.data.views import camera_view
    from model.prepare import prepare_frame

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    images = [img for i in order if (img := cv2.imread(str(samples[int(i)].path), cv2.IMREAD_COLOR)) is not None]
    if not images:
        raise DatasetError("no training image could be read for int8 calibration")
    frames = []
    for i in range(count):
        image = images[i % len(images)]
        frames.append(prepare_frame(image if i < len(images) else camera_view(image, rng), size))
    return np.stack(frames)


def export_finetuned(
    config: FinetuneConfig,
    result: TrainResult,
    out_dir: Path,
    dhash: str,
    progress: bool,
    calibration: np.ndarray | None = None,
) -> dict[str, Path]:
    """Best checkpoint → backbone weights file → ``model.export`` (all variants, int8 calibrated on
    ``calibration``: the user's own images) → provenance in each sidecar."""
    from model.export.api import export_model

    best = checkpoint.load(result.best_checkpoint)
    net = build_net(config, len(best["classes"]))
    net.load_state_dict(best["model"])
    backbone = get_backbone(config.backbone)
    base_weights = Path(config.base_weights) if config.base_weights else None
    weights = write_backbone_weights(net.features, backbone, out_dir / "finetuned-backbone.pt", base_weights)
    paths = export_model(
        config.backbone,
        out_dir / "featurizer",
        variants=config.export_variants,
        weights=weights,
        progress=progress,
        calibration_frames=calibration,
        calibration_source=f"{len(calibration)} frames of the fine-tuning images (data hash {dhash[:12]})"
        if calibration is not None
        else "",
    )
    base_id = _base_description(config)
    for path in paths.values():
        sidecar = read_sidecar(path)
        sidecar.extra["finetune"] = {
            "base_model": base_id,
            "training_data_hash": dhash,
            "training_hash": best["training_hash"],
            "classes": best["classes"],
            "best_epoch": best["epoch"],
            "val_acc": best["val_acc"],
        }
        write_sidecar(path, sidecar)  # the .onnx is unchanged, so its sha256 and model id still hold
    return paths


def _base_description(config: FinetuneConfig) -> str:
    spec = get_backbone(config.backbone).spec
    return f"{spec.name} ({config.base_weights or spec.weights_source})"


def export_base(config: FinetuneConfig, out_dir: Path, progress: bool) -> Path:
    from model.export.api import ensure_exported

    weights = Path(config.base_weights) if config.base_weights else None
    return ensure_exported(out_dir / "base", ["fp32"], config.backbone, weights, progress=progress)["fp32"]


def run_finetune(
    config: FinetuneConfig,
    inputs: Inputs,
    out_dir: Path,
    restart: bool = False,
    export: bool = True,
    check: ImageCheck | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    split, problems = prepare_split(config, inputs, check, progress)
    dhash = data_hash(split)
    (out_dir / "data.json").write_text(
        json.dumps(
            {
                "data_hash": dhash,
                "classes": split.classes,
                "train": [[str(s.path), s.label] for s in split.train],
                "val": [[str(s.path), s.label] for s in split.val],
                "skipped": problems,
            },
            indent=1,
        )
        + "\n"
    )
    trainer = Trainer(config, split, dhash, out_dir, progress)
    result = trainer.run(restart=restart)
    summary: dict[str, Any] = {
        "out_dir": str(out_dir),
        "best_checkpoint": str(result.best_checkpoint),
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "stopped_early": result.stopped_early,
        "skipped": problems,
        "metrics": str(out_dir / "metrics.json"),
        "plot": str(out_dir / "training.png"),
    }
    if not export:
        return summary
    torch.set_grad_enabled(True)
    size = get_backbone(config.backbone).spec.input_size
    calibration = calibration_frames(split.train, size, config.seed)
    paths = export_finetuned(config, result, out_dir, dhash, progress, calibration)
    summary["exported"] = {k: str(v) for k, v in paths.items()}
    extra: dict[str, Any] = {"exported": summary["exported"]}
    if inputs.holdout is not None:
        from model.finetune.compare import compare_models

        holdout = load_input(inputs.holdout, inputs, check, progress)
        base = export_base(config, out_dir, progress)
        tuned = paths.get("fp32") or next(iter(paths.values()))
        comparison = compare_models({"base": base, "finetuned": tuned}, holdout.samples, progress)
        summary["comparison"] = extra["comparison"] = comparison
        (out_dir / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    state = checkpoint.load(out_dir / "checkpoints" / "last.pt")["state"]
    trainer.write_metrics(state, extra)
    return summary
