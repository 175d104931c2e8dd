"""Give a foreign ONNX backbone (float NCHW in, features out) the featurizer contract by graph surgery.

In front: uint8 BGR NHWC ``image`` → float → colour order → (x - mean) / std → NCHW. Behind: global average
pooling when the output is a feature map, then L2 normalization to ``embedding``. Works on any opset ≥ 13.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.contract import INPUT_NAME, OUTPUT_NAME

_P = "vs_contract_"
"""Prefix of every name this module adds, so nothing collides with the backbone's own names."""
L2_EPS = 1e-12


class WrapError(ValueError):
    """The ONNX graph cannot be wrapped (not one image input, not one output, unknown output rank)."""


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise WrapError("the ONNX model imports no default-domain opset")


def _rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_everywhere(attr.g, old, new)
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def wrap_with_contract(
    inner: onnx.ModelProto,
    input_size: int,
    color_order: str,
    mean: Sequence[float],
    std: Sequence[float],
    output_rank: int,
    output_dim: int | None = None,
    graph_name: str = "featurizer",
) -> onnx.ModelProto:
    """A new model: ``image`` uint8 ``[N, S, S, 3]`` BGR → ``inner`` → pooled, L2-normalized ``embedding``."""
    if color_order not in ("RGB", "BGR"):
        raise WrapError(f"color_order must be RGB or BGR, got {color_order!r}")
    if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
        raise WrapError(f"mean and std need 3 values each, std non-zero (got mean={list(mean)}, std={list(std)})")
    if output_rank not in (2, 4):
        raise WrapError(f"the backbone output must be [N, D] or a feature map [N, C, H, W], got rank {output_rank}")
    model = onnx.ModelProto()
    model.CopyFrom(inner)
    graph = model.graph
    opset = _opset(model)
    if opset < 13:
        raise WrapError(f"opset {opset} is too old to wrap (need ≥ 13)")

    # Older exporters list initializers among the inputs; they are weights, not inputs.
    weights = {init.name for init in graph.initializer}
    keep = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(keep)
    if len(graph.input) != 1:
        raise WrapError(f"expected one image input, the graph has {[v.name for v in graph.input]}")
    if len(graph.output) != 1:
        raise WrapError(f"expected one output, the graph has {[v.name for v in graph.output]}")

    inner_in = _P + "backbone_input"
    inner_out = _P + "backbone_output"
    _rename_everywhere(graph, graph.input[0].name, inner_in)
    _rename_everywhere(graph, graph.output[0].name, inner_out)
    del graph.input[:]
    del graph.output[:]

    front: list[onnx.NodeProto] = [helper.make_node("Cast", [INPUT_NAME], [_P + "f"], to=TensorProto.FLOAT)]
    pixels = _P + "f"
    if color_order == "RGB":
        front.append(helper.make_node("Gather", [pixels, _P + "bgr_to_rgb"], [_P + "rgb"], axis=3))
        pixels = _P + "rgb"
    front += [
        helper.make_node("Sub", [pixels, _P + "mean"], [_P + "centred"]),
        helper.make_node("Div", [_P + "centred", _P + "std"], [_P + "normalized"]),
        helper.make_node("Transpose", [_P + "normalized"], [inner_in], perm=[0, 3, 1, 2]),
    ]
    back: list[onnx.NodeProto] = []
    features = inner_out
    if output_rank == 4:
        back += [
            helper.make_node("GlobalAveragePool", [inner_out], [_P + "gap"]),
            helper.make_node("Flatten", [_P + "gap"], [_P + "pooled"], axis=1),
        ]
        features = _P + "pooled"
    if opset >= 18:
        back.append(helper.make_node("ReduceL2", [features, _P + "axes"], [_P + "norm"], keepdims=1))
    else:
        back.append(helper.make_node("ReduceL2", [features], [_P + "norm"], axes=[1], keepdims=1))
    back += [
        # A zero vector (all ReLUs off) must not become NaN on the wire.
        helper.make_node("Max", [_P + "norm", _P + "eps"], [_P + "safe_norm"]),
        helper.make_node("Div", [features, _P + "safe_norm"], [OUTPUT_NAME]),
    ]
    constants = [
        numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), _P + "bgr_to_rgb"),
        numpy_helper.from_array(np.asarray(mean, dtype=np.float32), _P + "mean"),
        numpy_helper.from_array(np.asarray(std, dtype=np.float32), _P + "std"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), _P + "axes"),
        numpy_helper.from_array(np.array(L2_EPS, dtype=np.float32), _P + "eps"),
    ]
    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", input_size, input_size, 3]))
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", output_dim or "D"]))
    graph.name = graph_name
    # Stale shapes from the exporter (e.g. a fixed batch of 1) would contradict the dynamic batch.
    del graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise WrapError(f"the wrapped graph is not valid ONNX: {exc}") from exc
    return model
