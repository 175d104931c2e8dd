"""The network being fine-tuned: the backbone's feature map, the exporter's pooling, a classifier head.

The embedding computed here is the one the exported model outputs (global average pool, L2 norm), so a
metric loss on it shapes exactly the vectors the search will compare.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from model.backbones.base import BackboneSpec


class FinetuneNet(nn.Module):
    """uint8 BGR NHWC → (logits ``[N, C]``, L2-normalized embedding ``[N, D]``)."""

    def __init__(self, features: nn.Module, spec: BackboneSpec, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = features
        # The same input handling the exporter puts in the graph: BGR → backbone order, (x - mean) / std.
        self.flip_to_rgb = spec.color_order == "RGB"
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(spec.dim, num_classes)
        self.blocks: list[nn.Module] = find_blocks(features)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        if self.flip_to_rgb:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(self.normalize(images)).mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), F.normalize(pooled, dim=1)

    def train(self, mode: bool = True) -> FinetuneNet:
        super().train(mode)
        # Batch statistics of a few dozen catalog photos are noisier than ImageNet's running averages, and
        # the exported graph uses the running averages: keep them fixed, train only the affine parts.
        for module in self.features.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def set_trainable(self, unfreeze_blocks: int) -> int:
        """Freeze the backbone except its last ``unfreeze_blocks`` blocks; return how many parameters train."""
        for p in self.features.parameters():
            p.requires_grad_(False)
        for block in self.blocks[len(self.blocks) - unfreeze_blocks :] if unfreeze_blocks else []:
            for p in block.parameters():
                p.requires_grad_(True)
        for p in self.head.parameters():
            p.requires_grad_(True)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def unfreezable(self, unfreeze_blocks: int) -> Iterator[nn.Parameter]:
        """Parameters of the last blocks (the backbone's optimizer group, whether frozen yet or not)."""
        for block in self.blocks[len(self.blocks) - unfreeze_blocks :] if unfreeze_blocks else []:
            yield from block.parameters()


def find_blocks(features: nn.Module, probe_size: int = 64) -> list[nn.Module]:
    """The backbone's blocks in the order the forward pass runs them, found by tracing one call.

    Works for any backbone without knowing its attribute names: every item of a ``ModuleList``/
    ``Sequential`` is a block (an MBConv or a residual block), and runs of plain layers between them
    (stem conv + BN, head conv + BN) are grouped into one block each. Layers the feature map never calls
    (an ImageNet ``fc`` kept for the state_dict) are left out, so "the last blocks" are the last *used* ones.
    """
    candidates: list[tuple[nn.Module, nn.Module]] = []  # (unit, parent)

    def collect(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, (nn.ModuleList, nn.Sequential)):
                candidates.extend((item, child) for item in child.children())
            elif any(True for _ in child.children()) and not any(True for _ in child.parameters(recurse=False)):
                collect(child)
            else:
                candidates.append((child, module))

    collect(features)
    order: list[int] = []
    handles = []
    for i, (unit, _) in enumerate(candidates):
        handles.append(unit.register_forward_hook(lambda *_, i=i: order.append(i) if i not in order else None))
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            features(torch.zeros(1, 3, probe_size, probe_size))
    finally:
        for handle in handles:
            handle.remove()
        features.train(was_training)
    blocks: list[nn.Module] = []
    run: list[nn.Module] = []
    for i in order:
        unit, parent = candidates[i]
        is_item = isinstance(parent, (nn.ModuleList, nn.Sequential))
        if is_item:
            if run:
                blocks.append(nn.ModuleList(run))
                run = []
            blocks.append(unit)
        elif any(True for _ in unit.parameters()):
            run.append(unit)
    if run:
        blocks.append(nn.ModuleList(run))
    if not blocks:
        raise ValueError("found no trainable blocks in the backbone's feature map")
    return blocks
