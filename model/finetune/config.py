"""Every training setting, typed and validated in one place; the hash guards resumed runs."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Variant = Literal["fp32", "int8", "fp16"]

# Settings that do not change what is learned: a resumed run may differ in these.
_NOT_HASHED = frozenset({"num_workers", "device", "progress", "export_variants", "patience", "epochs"})


def _all_variants() -> list[Variant]:
    return ["fp32", "int8", "fp16"]


class FinetuneConfig(BaseModel):
    """Hyperparameters of ``visual-search model finetune``."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field(default="efficientnet-lite0", description="Registry name of the pretrained backbone.")
    base_weights: str | None = Field(
        default=None, description="State_dict file for the backbone; default: the packaged ImageNet weights."
    )
    epochs: int = Field(default=10, ge=1, description="Most epochs to train (early stopping may end sooner).")
    head_epochs: int = Field(
        default=1, ge=0, description="Epochs that train only the classification head before unfreezing."
    )
    unfreeze_blocks: int = Field(
        default=3,
        ge=0,
        description="Backbone blocks, counted from the output end, trained after the head epochs (0: head only).",
    )
    lr: float = Field(default=1e-3, gt=0, description="Learning rate of the head (AdamW).")
    backbone_lr_mult: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Backbone learning rate as a fraction of --lr (pretrained features move slowly).",
    )
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(default=32, ge=2, description="Images per step.")
    input_size: int | None = Field(
        default=None,
        ge=32,
        description="Training resolution override (speed on a CPU); the exported model keeps the backbone's size.",
    )
    metric_loss_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of a supervised-contrastive loss on the L2-normalized embedding (0: off).",
    )
    metric_temperature: float = Field(default=0.1, gt=0, description="Temperature of the contrastive loss.")
    label_smoothing: float = Field(default=0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    augment: bool = Field(default=True, description="Hand-held camera augmentation on training images.")
    patience: int = Field(default=3, ge=1, description="Epochs without a better validation accuracy before stopping.")
    val_fraction: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Validation share of each class when no separate validation input is given.",
    )
    seed: int = Field(default=0, description="Seed for the split, augmentation, initialisation and shuffling.")
    num_workers: int = Field(default=0, ge=0, description="Data-loading worker processes (0: in the training process).")
    device: str = Field(default="auto", description="torch device: auto (CUDA when present), cpu, cuda, cuda:1.")
    export_variants: list[Variant] = Field(
        default_factory=_all_variants, description="Variants exported from the best checkpoint."
    )

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.head_epochs > self.epochs:
            raise ValueError(f"head_epochs ({self.head_epochs}) must not exceed epochs ({self.epochs})")
        if not self.export_variants:
            raise ValueError("export_variants must name at least one of fp32, int8, fp16")
        return self

    def training_hash(self, data_hash: str) -> str:
        """What a checkpoint was trained with: settings that shape learning plus the data."""
        learned = {k: v for k, v in self.model_dump(mode="json").items() if k not in _NOT_HASHED}
        blob = json.dumps({"config": learned, "data": data_hash}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def diff(self, other: dict[str, object]) -> list[str]:
        """Keys (that matter for resuming) whose values differ from ``other``'s."""
        mine = self.model_dump(mode="json")
        return sorted(k for k in mine if k not in _NOT_HASHED and mine[k] != other.get(k))
