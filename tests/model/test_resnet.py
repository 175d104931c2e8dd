"""ResNet backbones: torchvision key layout, weights-file errors, and exact export parity with random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.backbones.base import get_backbone
from model.backbones.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet,
    WeightsFileError,
    resnet18,
    resnet50,
)

# torchvision.models.resnet18().state_dict().keys(), written out literally so a renamed module fails here.
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
TORCHVISION_RESNET18_KEYS = """
conv1.weight bn1.weight bn1.bias bn1.running_mean bn1.running_var bn1.num_batches_tracked
layer1.0.conv1.weight layer1.0.bn1.weight layer1.0.bn1.bias layer1.0.bn1.running_mean layer1.0.bn1.running_var
layer1.0.bn1.num_batches_tracked layer1.0.conv2.weight layer1.0.bn2.weight layer1.0.bn2.bias
layer1.0.bn2.running_mean layer1.0.bn2.running_var layer1.0.bn2.num_batches_tracked
layer1.1.conv1.weight layer1.1.bn1.weight layer1.1.bn1.bias layer1.1.bn1.running_mean layer1.1.bn1.running_var
layer1.1.bn1.num_batches_tracked layer1.1.conv2.weight layer1.1.bn2.weight layer1.1.bn2.bias
layer1.1.bn2.running_mean layer1.1.bn2.running_var layer1.1.bn2.num_batches_tracked
layer2.0.conv1.weight layer2.0.bn1.weight layer2.0.bn1.bias layer2.0.bn1.running_mean layer2.0.bn1.running_var
layer2.0.bn1.num_batches_tracked layer2.0.conv2.weight layer2.0.bn2.weight layer2.0.bn2.bias
layer2.0.bn2.running_mean layer2.0.bn2.running_var layer2.0.bn2.num_batches_tracked
layer2.0.downsample.0.weight layer2.0.downsample.1.weight layer2.0.downsample.1.bias
layer2.0.downsample.1.running_mean layer2.0.downsample.1.running_var layer2.0.downsample.1.num_batches_tracked
layer2.1.conv1.weight layer2.1.bn1.weight layer2.1.bn1.bias layer2.1.bn1.running_mean layer2.1.bn1.running_var
layer2.1.bn1.num_batches_tracked layer2.1.conv2.weight layer2.1.bn2.weight layer2.1.bn2.bias
layer2.1.bn2.running_mean layer2.1.bn2.running_var layer2.1.bn2.num_batches_tracked
layer3.0.conv1.weight layer3.0.bn1.weight layer3.0.bn1.bias layer3.0.bn1.running_mean layer3.0.bn1.running_var
layer3.0.bn1.num_batches_tracked layer3.0.conv2.weight layer3.0.bn2.weight layer3.0.bn2.bias
layer3.0.bn2.running_mean layer3.0.bn2.running_var layer3.0.bn2.num_batches_tracked
layer3.0.downsample.0.weight layer3.0.downsample.1.weight layer3.0.downsample.1.bias
layer3.0.downsample.1.running_mean layer3.0.downsample.1.running_var layer3.0.downsample.1.num_batches_tracked
layer3.1.conv1.weight layer3.1.bn1.weight layer3.1.bn1.bias layer3.1.bn1.running_mean layer3.1.bn1.running_var
layer3.1.bn1.num_batches_tracked layer3.1.conv2.weight layer3.1.bn2.weight layer3.1.bn2.bias
layer3.1.bn2.running_mean layer3.1.bn2.running_var layer3.1.bn2.num_batches_tracked
layer4.0.conv1.weight layer4.0.bn1.weight layer4.0.bn1.bias layer4.0.bn1.running_mean layer4.0.bn1.running_var
layer4.0.bn1.num_batches_tracked layer4.0.conv2.weight layer4.0.bn2.weight layer4.0.bn2.bias
layer4.0.bn2.running_mean layer4.0.bn2.running_var layer4.0.bn2.num_batches_tracked
layer4.0.downsample.0.weight layer4.0.downsample.1.weight layer4.0.downsample.1.bias
layer4.0.downsample.1.running_mean layer4.0.downsample.1.running_var layer4.0.downsample.1.num_batches_tracked
layer4.1.conv1.weight layer4.1.bn1.weight layer4.1.bn1.bias layer4.1.bn1.running_mean layer4.1.bn1.running_var
layer4.1.bn1.num_batches_tracked layer4.1.conv2.weight layer4.1.bn2.weight layer4.1.bn2.bias
layer4.1.bn2.running_mean layer4.1.bn2.running_var layer4.1.bn2.num_batches_tracked
fc.weight fc.bias
""".split()  # noqa: SIM905 (one line of text per block reads better than 122 quoted items)


def _randomized(net: ResNet, seed: int) -> ResNet:
    """Random weights *and* BatchNorm statistics, so a wrong eps/order/stat in the export shows up."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(100)
    return net.eval()


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resnet") / "resnet18-random.pth"
    torch.manual_seed(0)
    torch.save(_randomized(resnet18(), seed=1).state_dict(), path)
    return path


def _photos(size: int) -> np.ndarray:
    """Three real photos (scikit-image), BGR uint8, resized the way the device prepares frames."""
    from skimage import data

    from model.prepare import prepare_frame

    frames = [np.ascontiguousarray(img[..., ::-1]) for img in (data.chelsea(), data.astronaut(), data.coffee())]
    return np.stack([prepare_frame(frame, size) for frame in frames])


def _reference(net: ResNet, batch_bgr: np.ndarray) -> np.ndarray:
    """The torch reference, preprocessing written independently of the exporter: BGR→RGB, mean/std, NCHW."""
    rgb = batch_bgr[..., ::-1].astype(np.float32)
    normalized = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    with torch.no_grad():
        fmap = net.features(torch.from_numpy(np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))))
    pooled = fmap.mean(dim=(2, 3)).numpy()
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_resnet18_has_torchvision_key_layout() -> None:
    assert len(TORCHVISION_RESNET18_KEYS) == 122
    assert list(resnet18().state_dict()) == TORCHVISION_RESNET18_KEYS


def test_resnet50_has_torchvision_bottleneck_layout() -> None:
    keys = resnet50().state_dict()
    assert len(keys) == 320
    # torchvision's v1.5 bottleneck: 1x1 → 3x3 (strided) → 1x1 ×4, projection shortcut on the first block.
    assert tuple(keys["layer2.0.conv1.weight"].shape) == (128, 256, 1, 1)
    assert tuple(keys["layer2.0.conv3.weight"].shape) == (512, 128, 1, 1)
    assert tuple(keys["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert "layer1.1.downsample.0.weight" not in keys
    assert all(f"layer4.2.bn3.{p}" in keys for p in _BN)
    assert tuple(keys["fc.weight"].shape) == (1000, 2048)


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_registered_specs(name: str, dim: int) -> None:
    spec = get_backbone(name).spec
    assert (spec.dim, spec.input_size, spec.color_order) == (dim, 224, "RGB")
    assert spec.mean == (123.675, 116.28, 103.53) and spec.std == (58.395, 57.12, 57.375)
    assert spec.needs_weights_file


def test_build_without_weights_says_how_to_get_them() -> None:
    with pytest.raises(ValueError, match=r"resnet18 needs --weights.*torchvision"):
        get_backbone("resnet18").build(None)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        get_backbone("resnet50").build(missing)


def test_unreadable_weights_file_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file\n" * 10)
    with pytest.raises(WeightsFileError, match=rf"{junk}.*not a readable torch state_dict"):
        get_backbone("resnet18").build(junk)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(WeightsFileError, match=rf"{notdict}.*does not hold a state_dict"):
        get_backbone("resnet18").build(notdict)


def test_wrong_layout_names_first_missing_and_unexpected_keys(tmp_path: Path, resnet18_weights: Path) -> None:
    state = torch.load(resnet18_weights, weights_only=True)
    state["backbone.extra.weight"] = state.pop("layer3.1.conv2.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsFileError) as info:
        get_backbone("resnet18").build(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "missing keys: layer3.1.conv2.weight" in message
    assert "unexpected keys: backbone.extra.weight" in message


def test_resnet18_file_into_resnet50_is_refused(resnet18_weights: Path) -> None:
    with pytest.raises(WeightsFileError, match=r"torchvision resnet50 layout.*missing keys: layer1\.0\.conv3\.weight"):
        get_backbone("resnet50").build(resnet18_weights)


def test_shape_mismatch_is_clear(tmp_path: Path, resnet18_weights: Path) -> None:
    state = torch.load(resnet18_weights, weights_only=True)
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    bad = tmp_path / "narrow.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsFileError, match=r"other shapes.*layer1\.0\.conv1\.weight \(32, 64, 3, 3\)"):
        get_backbone("resnet18").build(bad)


def test_published_file_variants_load(tmp_path: Path, resnet18_weights: Path) -> None:
    """torchvision's published files lack num_batches_tracked; training scripts wrap and prefix keys."""
    state = torch.load(resnet18_weights, weights_only=True)
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    x = torch.randn(1, 3, 64, 64)
    reference = get_backbone("resnet18").build(resnet18_weights)(x)
    for label, variant in (("old", old_style), ("wrapped", wrapped), ("headless", headless)):
        path = tmp_path / f"{label}.pth"
        torch.save(variant, path)
        with torch.no_grad():
            assert torch.equal(get_backbone("resnet18").build(path)(x), reference), label
    assert get_backbone("resnet18").classifier(tmp_path / "headless.pth") is None
    head = get_backbone("resnet18").classifier(resnet18_weights)
    assert head is not None and head(torch.zeros(2, 512)).shape == (2, 1000)


def test_feature_map_is_cut_before_pooling(resnet18_weights: Path) -> None:
    module = get_backbone("resnet18").build(resnet18_weights)
    assert not module.training
    with torch.no_grad():
        fmap = module(torch.zeros(1, 3, 224, 224))
    assert tuple(fmap.shape) == (1, 512, 7, 7)


@pytest.mark.slow
def test_resnet18_export_parity_with_torch_reference(tmp_path: Path, resnet18_weights: Path) -> None:
    """Export through the shared pipeline (fp32) and compare with an independent torch reference."""
    from model.export.api import export_model
    from model.featurizer import Featurizer

    paths = export_model(
        "resnet18", tmp_path / "out", variants=["fp32"], weights=resnet18_weights, pooling="avg", progress=False
    )
    model_path = Path(paths["fp32"])
    sidecar = json.loads(model_path.with_suffix(".json").read_text())
    assert sidecar["backbone"] == "resnet18" and sidecar["dim"] == 512 and sidecar["input_size"] == 224
    assert sidecar["normalization"]["color_order"] == "RGB"

    batch = _photos(224)
    net = _randomized(resnet18(), seed=1)
    net.load_state_dict(torch.load(resnet18_weights, weights_only=True))
    expected = _reference(net, batch)
    got = Featurizer(model_path, backend="onnxruntime").featurize(batch)
    cosine = np.sum(got * expected, axis=1)
    assert got.shape == (3, 512)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # Different photos must give different vectors, or the cosine above would prove nothing.
    assert float(got[0] @ got[1]) < 0.999
