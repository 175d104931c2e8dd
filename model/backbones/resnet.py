"""ResNet-18 / ResNet-50 (the seeds' featurizers), loading a torchvision-layout ``state_dict`` file.

No registry ships ResNet ImageNet weights, and torchvision has no CPU build here, so the network is
written out with *exactly* torchvision's module names (``conv1``, ``bn1``, ``layer1..4`` of
``BasicBlock``/``Bottleneck`` with ``downsample.0/.1``, ``fc``): a file saved from
``torchvision.models.resnet50(weights=...).state_dict()`` loads with strict key checking.
``build()`` returns the feature map cut before ``avgpool``; the exporter adds pooling and L2.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from model.backbones.base import Backbone, BackboneSpec, register
from model.contracts.errors import VisualSearchError

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
_WEIGHTS_SOURCE = "user-supplied torchvision-layout state_dict (--weights)"
_WEIGHTS_LICENSE = "user-supplied (torchvision ImageNet weights are BSD-3-Clause)"
_CLASSIFIER_PREFIX = "fc."
_BN_COUNTER = ".num_batches_tracked"


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    # torchvision's v1.5 layout: the stride sits on the 3x3 conv (conv2), not on conv1.
    expansion: ClassVar[int] = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """The whole classifier, module names as in torchvision; :meth:`features` stops before ``avgpool``."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, 1000)
        self.has_classifier = True
        """False when the weights file had no ``fc.*`` (a headless feature-extractor checkpoint)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ResNetFeatures(nn.Module):
    """The exported part: normalized NCHW RGB → ``[N, C, H/32, W/32]``. Holds the whole net, so ``fc`` comes too."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


class PooledClassifier(nn.Module):
    """Pooled features ``[N, C]`` → 1000 ImageNet logits (the ``fc`` of the checkpoint)."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3))


class WeightsFileError(VisualSearchError, ValueError):
    """A ``--weights`` file that cannot be read or does not fit the network."""


def _unwrap_state_dict(raw: object, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts often save {"state_dict": ...} or {"model": ...}, and DataParallel prefixes "module.".
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = raw.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                raw = inner
                break
    if isinstance(raw, nn.Module):
        raw = raw.state_dict()
    if not isinstance(raw, Mapping) or not raw:
        raise WeightsFileError(
            f"weights file {path} does not hold a state_dict (got {type(raw).__name__});"
            " save one with torch.save(model.state_dict(), path)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsFileError(
                f"weights file {path}: entry {key!r} is a {type(value).__name__}, not a tensor: not a state_dict"
            )
        tensors[key] = value
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a state_dict file on the CPU without running pickled code; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} is not a file")
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler fails on junk with whatever error it meets (IndexError, UnpicklingError, ...).
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsFileError(
            f"weights file {path} is not a readable torch state_dict ({type(exc).__name__}: {first_line})"
        ) from exc
    return _unwrap_state_dict(raw, path)


def _preview(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > limit else "")


def load_torchvision_weights(net: ResNet, path: Path | str, name: str) -> ResNet:
    """Load ``path`` into ``net`` with strict keys and shapes; a missing ``fc`` only disables :meth:`classifier`."""
    path = Path(path)
    state = read_state_dict(path)
    expected = net.state_dict()
    # torchvision's published files predate BatchNorm's num_batches_tracked buffer; it is unused in eval mode.
    optional = [k for k in expected if k.startswith(_CLASSIFIER_PREFIX) or k.endswith(_BN_COUNTER)]
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_preview(unexpected)}")
        raise WeightsFileError(f"weights file {path} does not have the torchvision {name} layout ({'; '.join(parts)})")
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise WeightsFileError(
            f"weights file {path} has the key names of {name} but other shapes (a different depth or width?):"
            f" {_preview(wrong, 3)}"
        )
    net.load_state_dict(state, strict=False)
    net.has_classifier = all(k in state for k in expected if k.startswith(_CLASSIFIER_PREFIX))
    return net


class _ResNetBackbone(Backbone):
    factory: ClassVar[Any]

    def _load(self, weights: Path | None) -> ResNet:
        name = self.spec.name
        if weights is None:
            raise ValueError(
                f"backbone {name} needs --weights: a torchvision-layout state_dict file"
                f" (e.g. torch.save(torchvision.models.{name}(weights='IMAGENET1K_V1').state_dict(), '{name}.pth'));"
                " no package registry ships ResNet ImageNet weights"
            )
        net: ResNet = self.factory()
        return load_torchvision_weights(net, weights, name).eval()

    def build(self, weights: Path | None = None) -> nn.Module:
        return ResNetFeatures(self._load(weights)).eval()

    def classifier(self, weights: Path | None = None) -> nn.Module | None:
        net = self._load(weights)
        if not net.has_classifier:
            return None
        return PooledClassifier(net.fc).eval()


def _spec(name: str, dim: int) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        dim=dim,
        input_size=224,
        color_order="RGB",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_source=_WEIGHTS_SOURCE,
        weights_license=_WEIGHTS_LICENSE,
        needs_weights_file=True,
    )


@register
class ResNet18Backbone(_ResNetBackbone):
    spec = _spec("resnet18", 512)
    factory = staticmethod(resnet18)


@register
class ResNet50Backbone(_ResNetBackbone):
    spec = _spec("resnet50", 2048)
    factory = staticmethod(resnet50)
