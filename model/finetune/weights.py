"""Fine-tuned backbone → a weights file the backbone's own ``build(weights=...)`` (and so export) accepts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model.backbones.base import Backbone


def backbone_state(features: nn.Module, backbone: Backbone, base_weights: Path | None) -> dict[str, torch.Tensor]:
    """The feature map's tensors under the key names of the backbone's weights file.

    The feature map may wrap the network (``net._blocks.0...``) while weights files use the bare layout
    (``_blocks.0...``), and hold tensors the feature map never uses (an ImageNet ``fc``): start from the
    full base state_dict and replace each tensor by the fine-tuned one whose key ends with the same name.
    """
    tuned = features.state_dict()
    template_net = backbone.classifier(base_weights)
    template = template_net.state_dict() if template_net is not None else {}
    if not template:
        # No full network to take names from: drop the wrapper prefix common to all keys.
        prefix = _common_prefix(list(tuned))
        return {k[len(prefix) :]: v.detach().cpu().clone() for k, v in tuned.items()}
    # The wrapper prefix (e.g. "net.") under which every fine-tuned key is a key of the weights file.
    for prefix in _prefixes(next(iter(tuned))):
        if all(k.startswith(prefix) and k[len(prefix) :] in template for k in tuned):
            return {**template, **{k[len(prefix) :]: v.detach().cpu().clone() for k, v in tuned.items()}}
    strays = [k for k in tuned if not any(k.endswith(t) for t in template)][:5]
    raise ValueError(f"fine-tuned tensors {strays or list(tuned)[:5]} have no place in the backbone's weights file")


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) + ("." if i else "") for i in range(len(parts))]


def _common_prefix(keys: list[str]) -> str:
    parts = [k.split(".") for k in keys]
    prefix: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    prefix = prefix[: min(len(p) for p in parts) - 1]
    return ".".join(prefix) + "." if prefix else ""


def write_backbone_weights(
    features: nn.Module, backbone: Backbone, path: Path, base_weights: Path | None = None, probe_size: int = 64
) -> Path:
    """Save, then prove the file rebuilds the same feature map (a silent key mismatch would export the base)."""
    state = backbone_state(features, backbone, base_weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    rebuilt = backbone.build(path)
    probe = torch.randn(2, 3, probe_size, probe_size, generator=torch.Generator().manual_seed(0))
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            expected = features.cpu()(probe)
            actual = rebuilt(probe)
    finally:
        features.train(was_training)
    if not torch.allclose(expected, actual, atol=1e-5, rtol=1e-4):
        raise ValueError(
            f"{path} does not rebuild the fine-tuned backbone (max diff {float((expected - actual).abs().max()):.3g})"
        )
    return path
