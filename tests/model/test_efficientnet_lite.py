"""EfficientNet-Lite0 with the packaged ImageNet weights: the classifier must recognise real photos.

A wrong padding, scaling or colour order still produces vectors; only a check against ImageNet labels shows
that the network is the one the weights were trained as.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.backbones.base import get_backbone
from model.backbones.efficientnet_lite import Conv2dSame, build_network
from model.data.photos import skimage_photos
from model.export.graph import FeaturizerGraph
from model.imagenet import imagenet_labels
from model.prepare import prepare_frame


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return build_network()


def _top5(net: torch.nn.Module, bgr: np.ndarray) -> list[str]:
    # The exporter's own front end, so the test checks the preprocessing that ships in the graph.
    spec = get_backbone("efficientnet-lite0").spec
    front = FeaturizerGraph(torch.nn.Identity(), spec)
    x = torch.from_numpy(prepare_frame(bgr, spec.input_size)[None])
    with torch.no_grad():
        image = x.to(torch.float32).permute(0, 3, 1, 2).flip(dims=[1])
        logits = net((image - front.norm_mean) / front.norm_std)
    labels = imagenet_labels()
    return [labels[i] for i in logits[0].topk(5).indices.tolist()]


def test_imagenet_sanity_on_real_photos(classifier: torch.nn.Module) -> None:
    photos = dict(skimage_photos())
    cat = _top5(classifier, photos["skimage:chelsea"])
    assert any("cat" in label for label in cat), cat
    coffee = _top5(classifier, photos["skimage:coffee"])
    assert any(label.startswith(("espresso", "cup")) for label in coffee), coffee


def test_tf_same_padding_is_asymmetric() -> None:
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 4, 4)
    out = conv(x)[0, 0]
    # TF SAME on 4 px, k3 s2: one pixel of padding, at the bottom/right only → the top-left sum sees 9 ones.
    assert out.shape == (2, 2)
    assert out[0, 0].item() == 9.0 and out[1, 1].item() == 4.0


def test_batchnorm_eps_matches_tf() -> None:
    net = build_network()
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_backbone("efficientnet-lite0").build(tmp_path / "nope.pth")


def test_unfit_or_corrupt_weights_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch state_dict"):
        build_network(corrupt)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="does not fit EfficientNet-Lite0"):
        build_network(other)
