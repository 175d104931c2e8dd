"""What every backbone provides to the exporter.

A backbone is a torch module from normalized float NCHW input (in the backbone's own colour order) to a
feature map ``[N, C, H, W]`` — cut *before* global pooling. The exporter adds the parts every model
shares: uint8 BGR NHWC input, colour conversion and normalization in front; pooling and L2
normalization behind. That keeps preprocessing and pooling in one place for every backbone.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    input_size: int
    color_order: str
    """Channel order the weights were trained on: "RGB" or "BGR"."""
    mean: tuple[float, float, float]
    """Subtracted per channel, 0..255 scale, in ``color_order``."""
    std: tuple[float, float, float]
    """Divisor per channel, 0..255 scale, in ``color_order``."""
    weights_source: str
    weights_license: str
    needs_weights_file: bool = False
    """True when the user must pass ``--weights`` (no registry ships them)."""


class Backbone(ABC):
    spec: ClassVar[BackboneSpec]

    @abstractmethod
    def build(self, weights: Path | None = None) -> torch.nn.Module:
        """The feature extractor in eval mode with its weights loaded; raise FileNotFoundError/ValueError clearly."""

    def classifier(self, weights: Path | None = None) -> torch.nn.Module | None:
        """Optional: the full ImageNet classifier (pooled features → 1000 logits) for sanity checks."""
        return None


BACKBONES: dict[str, type[Backbone]] = {}
_PLUGIN_MODULES = ("model.backbones.efficientnet_lite", "model.backbones.resnet")


def register(cls: type[Backbone]) -> type[Backbone]:
    BACKBONES[cls.spec.name] = cls
    return cls


def get_backbone(name: str) -> Backbone:
    for module in _PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("model.backbones"):
                continue  # that plugin is not written yet
            raise
    if name not in BACKBONES:
        known = ", ".join(sorted(BACKBONES)) or "none"
        raise ValueError(f"unknown backbone '{name}' (known: {known}; MXNet checkpoints go through `--mxnet`)")
    return BACKBONES[name]()
