"""The training loop: head first, then the last backbone blocks; per-epoch checkpoints and early stopping."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.backbones import get_backbone
from model.finetune import checkpoint
from model.finetune.augment import CameraAugment
from model.finetune.config import FinetuneConfig
from model.finetune.data.split import Split
from model.finetune.loader import ImageSet, make_loader
from model.finetune.losses import supervised_contrastive
from model.finetune.network import FinetuneNet
from model.finetune.plot import plot_history
from model.logs import log_event

log = logging.getLogger(__name__)

LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"


@dataclass
class TrainResult:
    best_checkpoint: Path
    best_epoch: int
    best_val_acc: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_epoch: int = 0


def pick_device(wanted: str) -> torch.device:
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(wanted)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{wanted}' requested but torch sees no CUDA device; use --device cpu")
    return device


def build_net(config: FinetuneConfig, num_classes: int) -> FinetuneNet:
    backbone = get_backbone(config.backbone)
    weights = Path(config.base_weights) if config.base_weights else None
    features = backbone.build(weights)
    return FinetuneNet(features, backbone.spec, num_classes)


class Trainer:
    def __init__(
        self, config: FinetuneConfig, split: Split, data_hash: str, out_dir: Path, progress: bool = True
    ) -> None:
        self.config = config
        self.split = split
        self.data_hash = data_hash
        self.out_dir = out_dir
        self.progress = progress
        self.training_hash = config.training_hash(data_hash)
        self.device = pick_device(config.device)
        self.size = config.input_size or get_backbone(config.backbone).spec.input_size

    # --- public -------------------------------------------------------------------------------------
    def run(self, restart: bool = False) -> TrainResult:
        """Train (or resume from ``last.pt``) until ``epochs`` or early stop; the best checkpoint is kept."""
        cfg = self.config
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        torch.manual_seed(cfg.seed)
        net = build_net(cfg, len(self.split.classes)).to(self.device)
        optimizer = self._optimizer(net)
        state = self._initial_state()
        last = self.out_dir / LAST
        if last.exists() and not restart:
            state = self._resume(last, net, optimizer)
        resumed_from = state["epoch"]
        labels = self.split.label_index()
        augment = CameraAugment() if cfg.augment else None
        train_set = ImageSet(self.split.train, labels, self.size, augment, cfg.seed)
        val_set = ImageSet(self.split.val, labels, self.size, None, cfg.seed)
        while state["epoch"] < cfg.epochs and not state["finished"]:
            self._epoch(net, optimizer, train_set, val_set, state)
        if state["stopped_early"]:
            log_event(log, "early_stop", epochs_without_improvement=cfg.patience)
        return TrainResult(
            best_checkpoint=self.out_dir / BEST,
            best_epoch=state["best_epoch"],
            best_val_acc=state["best_val_acc"],
            history=state["history"],
            stopped_early=state["stopped_early"],
            resumed_from_epoch=resumed_from,
        )

    def _optimizer(self, net: Any) -> torch.optim.Optimizer:
        """AdamW with two groups: the head at ``lr``, the unfreezable blocks at ``lr × backbone_lr_mult``."""
        cfg = self.config
        return torch.optim.AdamW(
            [
                {"params": list(net.head.parameters()), "lr": cfg.lr, "name": "head"},
                {
                    "params": list(net.unfreezable(cfg.unfreeze_blocks)),
                    "lr": cfg.lr * cfg.backbone_lr_mult,
                    "name": "backbone",
                },
            ],
            weight_decay=cfg.weight_decay,
        )

    def _epoch(
        self, net: Any, optimizer: torch.optim.Optimizer, train_set: ImageSet, val_set: ImageSet, state: dict[str, Any]
    ) -> None:
        """One epoch: head only for the first ``head_epochs``, cosine learning rate, validation, then the best
        and last checkpoints, early stopping and ``metrics.json`` updated in ``state``."""
        cfg = self.config
        epoch = state["epoch"]  # 0-based count of finished epochs
        head_only = epoch < cfg.head_epochs or cfg.unfreeze_blocks == 0
        trainable = net.set_trainable(0 if head_only else cfg.unfreeze_blocks)
        factor = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))  # cosine over the whole run
        for group in optimizer.param_groups:
            base = cfg.lr if group["name"] == "head" else cfg.lr * cfg.backbone_lr_mult
            group["lr"] = base * factor
        started = time.monotonic()
        train_loss, train_ce, train_acc = self._train_epoch(net, optimizer, train_set, epoch)
        val_loss, val_acc = self._evaluate(net, val_set, epoch)
        record = {
            "epoch": epoch + 1,
            "phase": "head" if head_only else f"last {cfg.unfreeze_blocks} blocks",
            "trainable_params": trainable,
            "lr": cfg.lr * factor,
            "train_loss": train_loss,
            "train_ce": train_ce,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": round(time.monotonic() - started, 1),
        }
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if val_acc > state["best_val_acc"]:
            state.update(best_val_acc=val_acc, best_epoch=epoch + 1, since_best=0)
            self._save_best(net, epoch + 1, val_acc)
        else:
            state["since_best"] += 1
        if state["since_best"] >= cfg.patience:
            state["finished"] = True
            state["stopped_early"] = True
        log_event(log, "epoch_done", **record, best_val_acc=state["best_val_acc"])
        self._save_last(net, optimizer, state)
        self.write_metrics(state)

    def write_metrics(self, state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        path = self.out_dir / "metrics.json"
        metrics: dict[str, Any] = {
            "backbone": self.config.backbone,
            "training_input_size": self.size,
            "classes": self.split.classes,
            "images": {"train": len(self.split.train), "val": len(self.split.val)},
            "data_hash": self.data_hash,
            "training_hash": self.training_hash,
            "config": self.config.model_dump(mode="json"),
            "best_epoch": state["best_epoch"],
            "best_val_acc": state["best_val_acc"],
            "stopped_early": state["stopped_early"],
            "history": state["history"],
        }
        if path.exists():
            previous = json.loads(path.read_text())
            metrics = {**{k: v for k, v in previous.items() if k not in metrics}, **metrics}
        metrics.update(extra or {})
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        tmp.replace(path)
        if state["history"]:
            plot_history(state["history"], self.out_dir / "training.png")
        return path

    # --- epochs -------------------------------------------------------------------------------------
    def _train_epoch(
        self, net: FinetuneNet, optimizer: torch.optim.Optimizer, dataset: ImageSet, epoch: int
    ) -> tuple[float, float, float]:
        """Mean objective (smoothed CE + metric term), mean plain CE (comparable to validation), accuracy."""
        cfg = self.config
        net.train()
        loader = make_loader(dataset, cfg.batch_size, True, epoch, cfg.seed, cfg.num_workers)
        total_loss, total_ce, correct, seen = 0.0, 0.0, 0, 0
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{cfg.epochs} train", unit="batch", disable=not self.progress, leave=True
        )
        for images, targets in bar:
            images, targets = images.to(self.device), targets.to(self.device)
            logits, embeddings = net(images)
            loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
            if cfg.metric_loss_weight > 0:
                loss = loss + cfg.metric_loss_weight * supervised_contrastive(
                    embeddings, targets, cfg.metric_temperature
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = targets.shape[0]
            total_loss += float(loss.detach()) * n
            total_ce += float(F.cross_entropy(logits.detach(), targets, reduction="sum"))
            correct += int((logits.argmax(1) == targets).sum())
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        return total_loss / max(seen, 1), total_ce / max(seen, 1), correct / max(seen, 1)

    @torch.no_grad()
    def _evaluate(self, net: FinetuneNet, dataset: ImageSet, epoch: int) -> tuple[float, float]:
        net.eval()
        loader = make_loader(dataset, self.config.batch_size, False, epoch, self.config.seed, self.config.num_workers)
        total_loss, correct, seen = 0.0, 0, 0
        for images, targets in tqdm(
            loader, desc=f"epoch {epoch + 1}/{self.config.epochs} val", unit="batch", disable=not self.progress
        ):
            images, targets = images.to(self.device), targets.to(self.device)
            logits, _ = net(images)
            total_loss += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += int((logits.argmax(1) == targets).sum())
            seen += targets.shape[0]
        return total_loss / max(seen, 1), correct / max(seen, 1)

    # --- state --------------------------------------------------------------------------------------
    def _initial_state(self) -> dict[str, Any]:
        return {
            "epoch": 0,
            "best_val_acc": -1.0,
            "best_epoch": 0,
            "since_best": 0,
            "history": [],
            "finished": False,
            "stopped_early": False,
        }

    def _resume(self, path: Path, net: FinetuneNet, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        payload = checkpoint.load(path)
        if payload.get("training_hash") != self.training_hash:
            changed = self.config.diff(payload.get("config", {}))
            data_changed = payload.get("data_hash") != self.data_hash
            reasons = ([f"settings {', '.join(changed)}"] if changed else []) + (
                ["the training/validation images"] if data_changed else []
            )
            raise checkpoint.CheckpointError(
                f"checkpoint {path} was written with different {' and '.join(reasons) or 'settings'}: "
                "resume with the same settings and data, pass --restart to discard it, or use another --out"
            )
        net.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        checkpoint.restore_rng(payload["rng"])
        state: dict[str, Any] = payload["state"]
        # The epoch limit and patience may be raised on resume (they are not hashed): re-open a finished run.
        state["finished"] = state["since_best"] >= self.config.patience
        state["stopped_early"] = state["finished"]
        log_event(log, "resuming", checkpoint=str(path), epochs_done=state["epoch"])
        return state

    def _save_last(self, net: FinetuneNet, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        checkpoint.save(
            self.out_dir / LAST,
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "state": state,
                "rng": checkpoint.rng_state(),
                "config": self.config.model_dump(mode="json"),
                "training_hash": self.training_hash,
                "data_hash": self.data_hash,
                "classes": self.split.classes,
            },
        )

    def _save_best(self, net: FinetuneNet, epoch: int, val_acc: float) -> None:
        checkpoint.save(
            self.out_dir / BEST,
            {
                "model": net.state_dict(),
                "epoch": epoch,
                "val_acc": val_acc,
                "config": self.config.model_dump(mode="json"),
                "training_hash": self.training_hash,
                "data_hash": self.data_hash,
                "classes": self.split.classes,
            },
        )
