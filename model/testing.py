"""A tiny featurizer that honours the model contract, built with the ONNX helper API (no torch).

For tests of the loop, transports and search mechanics, where EfficientNet's 30 ms would only slow the
suite down. It is a real, deterministic model: block-averaged pixels under a fixed random projection,
L2-normalized — identical frames give identical vectors and different images different ones. Tests of
retrieval *quality* use the real exported EfficientNet-Lite0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.contracts.model_file import INPUT_NAME, OUTPUT_NAME
from model.sidecar import Normalization, Sidecar, file_sha256, make_model_id, write_sidecar

if TYPE_CHECKING:
    import torch

TINY_BACKBONE = "tiny-test"


def build_tiny_model(path: str | Path, input_size: int = 32, dim: int = 64, seed: int = 0, opset: int = 17) -> Path:
    """Write ``path`` (.onnx) and its sidecar; return the model path."""
    if input_size % 4:
        raise ValueError("input_size must be a multiple of 4")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pooled = input_size // 4
    flat = 3 * pooled * pooled
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((flat, dim)) / np.sqrt(flat)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["x_nchw", "mean"], ["x_c"]),
        helper.make_node("Div", ["x_c", "scale"], ["x_n"]),
        helper.make_node("AveragePool", ["x_n"], ["x_p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["x_p"], ["x_flat"], axis=1),
        helper.make_node("MatMul", ["x_flat", "proj"], ["x_proj"]),
        helper.make_node("LpNormalization", ["x_proj"], [OUTPUT_NAME], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_featurizer",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", input_size, input_size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", dim])],
        initializer=[
            numpy_helper.from_array(np.array(127.0, dtype=np.float32), "mean"),
            numpy_helper.from_array(np.array(128.0, dtype=np.float32), "scale"),
            numpy_helper.from_array(weight, "proj"),
        ],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    sha = file_sha256(path)
    write_sidecar(
        path,
        Sidecar(
            model_id=make_model_id(TINY_BACKBONE, "fp32", sha),
            backbone=TINY_BACKBONE,
            variant="fp32",
            dim=dim,
            input_size=input_size,
            opset=opset,
            normalization=Normalization(color_order="BGR", mean=[127.0] * 3, std=[128.0] * 3),
            weights_source=f"random projection, seed {seed}",
            weights_license="n/a (test model)",
            sha256=sha,
        ),
    )
    return path


TINY_CONV = "tiny-conv"


def register_tiny_conv_backbone() -> str:
    """Register (once) a small random-weight conv backbone with the exporter, so tests run the real export path
    (graph, pooling, region vectors, stamps, int8 calibration, sidecars) in seconds. Returns its name."""
    from model.backbones.base import BACKBONES, Backbone, BackboneSpec, register

    if TINY_CONV in BACKBONES:
        return TINY_CONV

    class TinyConv(Backbone):
        spec = BackboneSpec(
            name=TINY_CONV,
            dim=32,
            input_size=64,
            color_order="RGB",
            mean=(127.0, 127.0, 127.0),
            std=(128.0, 128.0, 128.0),
            weights_source="random conv (seed 0)",
            weights_license="n/a (test model)",
        )

        def build(self, weights: Path | None = None) -> torch.nn.Module:
            import torch

            torch.manual_seed(0)
            net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
                torch.nn.ReLU6(),
                torch.nn.Conv2d(16, 32, 3, stride=4, padding=1),
                torch.nn.ReLU6(),
            )
            if weights is not None:
                net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
            return net.eval()

    register(TinyConv)
    return TINY_CONV


def export_tiny_region_model(out_dir: Path, variant: str = "fp32", **retrieval: object) -> Path:
    """The tiny conv backbone through the real exporter with the default retrieval settings (or ``retrieval``
    overrides: pooling, query_regions, regions, calibration_frames); returns the ``variant`` file."""
    from model.export.api import export_model

    name = register_tiny_conv_backbone()
    paths = export_model(name, Path(out_dir), (variant,), progress=False, calibration_images=16, **retrieval)  # type: ignore[arg-type]
    return paths[variant]
