"""wrap_onnx_with_preprocessing: a foreign NCHW float graph gets the contract's uint8 BGR front and L2 back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from model.export.wrap import wrap_onnx_with_preprocessing

MEAN = [123.7, 116.3, 103.5]
STD = [58.4, 57.1, 57.4]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("core") / "core.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        input_names=["data"],
        output_names=["fm"],
        dynamic_axes={"data": {0: "b"}, "fm": {0: "b"}},
        opset_version=13,
        dynamo=False,
    )
    return net, path


@pytest.mark.parametrize("pooling", ["avg", "gem"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_wrapped_graph_matches_reference(core, tmp_path: Path, pooling: str, color_order: str) -> None:
    net, path = core
    out = wrap_onnx_with_preprocessing(path, tmp_path / "w.onnx", 32, color_order, MEAN, STD, pooling=pooling)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["embedding"], {"image": x})[0]
    pixels = x[..., ::-1] if color_order == "RGB" else x
    t = torch.from_numpy(pixels.astype(np.float32).copy()).permute(0, 3, 1, 2)
    t = (t - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        fm = net(t)
    pooled = fm.mean((2, 3)) if pooling == "avg" else fm.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
    want = torch.nn.functional.normalize(pooled, dim=1).numpy()
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_wrong_arguments_are_refused(core, tmp_path: Path) -> None:
    _, path = core
    with pytest.raises(ValueError, match="color_order"):
        wrap_onnx_with_preprocessing(path, tmp_path / "w.onnx", 32, "YUV", MEAN, STD)
    with pytest.raises(ValueError, match="std"):
        wrap_onnx_with_preprocessing(path, tmp_path / "w.onnx", 32, "RGB", MEAN, [1.0, 0.0, 1.0])


def test_initializers_listed_as_inputs_are_dropped(core, tmp_path: Path) -> None:
    # Older exporters (IR < 4, MXNet's) list every weight as a graph input as well as an initializer.
    import onnx

    _, path = core
    legacy = onnx.load(str(path))
    weight_inputs = [
        onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
        for init in legacy.graph.initializer
    ]
    assert weight_inputs
    legacy.graph.input.extend(weight_inputs)
    before = legacy.SerializeToString()
    out = wrap_onnx_with_preprocessing(legacy, tmp_path / "w.onnx", 32, "BGR", MEAN, STD)
    assert legacy.SerializeToString() == before  # the caller's graph is not modified
    wrapped = onnx.load(str(out))
    assert [i.name for i in wrapped.graph.input] == ["image"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    reference = wrap_onnx_with_preprocessing(path, tmp_path / "ref.onnx", 32, "BGR", MEAN, STD)
    want = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(session.run(None, {"image": x})[0], want, atol=1e-6)
