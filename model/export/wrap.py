"""Put the contract's front and back around an ONNX graph that came from elsewhere (e.g. an MXNet export).

``core``: float32 NCHW input ``[N, 3, S, S]`` (normalized, in the network's colour order) → either a feature
map ``[N, C, H, W]`` (``pooling="avg"|"gem"``) or already-pooled features ``[N, C]`` / ``[N, C, 1, 1]``
(``pooling="none"``). The result takes uint8 ``[N, S, S, 3]`` BGR as ``image`` and returns L2-normalized float32
``[N, D]`` as ``embedding`` — the same contract as :mod:`model.export.graph` gives torch backbones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from model.contracts.model_file import INPUT_NAME, OUTPUT_NAME
from model.export.graph import GEM_P


def drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Remove graph inputs that are initializers (IR < 4 exporters, e.g. MXNet's, list every weight as one).

    Left in, each weight would become an input of the wrapped model that a caller could override, beside
    the contract's single ``image`` input, and runtimes could not fold them as constants.
    """
    weights = {init.name for init in model.graph.initializer}
    keep = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def wrap_onnx_with_preprocessing(
    core: onnx.ModelProto | str | Path,
    out_path: str | Path,
    input_size: int,
    color_order: str,
    mean: Sequence[float],
    std: Sequence[float],
    pooling: str = "avg",
    opset: int | None = None,
) -> Path:
    """Write ``out_path``: uint8 BGR NHWC → ``(x - mean) / std`` in ``color_order`` → ``core`` → pool → L2.

    ``mean``/``std`` are per channel on the 0..255 scale, in ``color_order`` ("RGB" or "BGR"). The core must
    have exactly one input besides its weights (initializers listed as inputs are dropped here) and one
    output (the first output is used otherwise). ``core`` itself is left unchanged. Returns ``out_path``; the
    caller writes the sidecar (``model.sidecar.write_sidecar``).
    """
    if color_order not in ("RGB", "BGR"):
        raise ValueError(f"color_order must be RGB or BGR, got {color_order!r}")
    if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
        raise ValueError("mean and std need 3 values each, std non-zero")
    if pooling not in ("avg", "gem", "none"):
        raise ValueError(f"pooling must be avg, gem or none, got {pooling!r}")
    model, opset = _prepared_core(core, opset)
    if not model.graph.input:
        raise ValueError("the core graph has no input besides its weights")
    core_in = model.graph.input[0].name
    core_out = model.graph.output[0].name
    opsets = [helper.make_opsetid("", opset)]
    ir = max(model.ir_version, 8)
    front_model = helper.make_model(_front(input_size, color_order, mean, std), opset_imports=opsets, ir_version=ir)
    back_model = helper.make_model(_back(pooling), opset_imports=opsets, ir_version=ir)
    model.ir_version = ir
    del model.graph.output[1:]
    merged = compose.merge_models(front_model, model, io_map=[("pre/nchw", core_in)])
    merged = compose.merge_models(merged, back_model, io_map=[(core_out, "post/in")])
    onnx.checker.check_model(merged)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save(merged, str(tmp))
    tmp.replace(out_path)
    return out_path


def _prepared_core(core: onnx.ModelProto | str | Path, opset: int | None) -> tuple[onnx.ModelProto, int]:
    """A copy of ``core`` without initializer inputs, at opset >= 13, its names prefixed ``core/``."""
    if isinstance(core, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(core)  # the caller's graph stays as it was
    else:
        model = onnx.load(str(core))
    drop_initializer_inputs(model)
    core_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    opset = max(opset or core_opset, 13)
    if core_opset < opset:
        model = onnx.version_converter.convert_version(model, opset)
    return compose.add_prefix(model, "core/"), opset


def _front(input_size: int, color_order: str, mean: Sequence[float], std: Sequence[float]) -> onnx.GraphProto:
    """uint8 BGR NHWC ``image`` → float32 NCHW ``pre/nchw``, ``(x - mean) / std`` in the network's colour order."""
    order = [2, 1, 0] if color_order == "RGB" else [0, 1, 2]
    return helper.make_graph(
        [
            helper.make_node("Cast", [INPUT_NAME], ["pre/f"], to=TensorProto.FLOAT),
            helper.make_node("Gather", ["pre/f", "pre/order"], ["pre/ordered"], axis=3),
            helper.make_node("Sub", ["pre/ordered", "pre/mean"], ["pre/centred"]),
            helper.make_node("Div", ["pre/centred", "pre/std"], ["pre/scaled"]),
            helper.make_node("Transpose", ["pre/scaled"], ["pre/nchw"], perm=[0, 3, 1, 2]),
        ],
        "front",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", input_size, input_size, 3])],
        [helper.make_tensor_value_info("pre/nchw", TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        initializer=[
            numpy_helper.from_array(np.array(order, dtype=np.int64), "pre/order"),
            numpy_helper.from_array(np.array(mean, dtype=np.float32).reshape(1, 1, 1, 3), "pre/mean"),
            numpy_helper.from_array(np.array(std, dtype=np.float32).reshape(1, 1, 1, 3), "pre/std"),
        ],
    )


def _back(pooling: str) -> onnx.GraphProto:
    """``post/in`` (feature map, or pooled features for ``none``) → pool (avg | GeM) → flatten → L2 ``embedding``."""
    back_nodes = []
    feat = "post/in"
    if pooling == "gem":
        back_nodes += [
            helper.make_node("Clip", [feat, "post/eps", ""], ["post/clipped"]),
            helper.make_node("Pow", ["post/clipped", "post/p"], ["post/pow"]),
            helper.make_node("GlobalAveragePool", ["post/pow"], ["post/mean"]),
            helper.make_node("Pow", ["post/mean", "post/inv_p"], ["post/pooled4"]),
        ]
        feat = "post/pooled4"
    elif pooling == "avg":
        back_nodes.append(helper.make_node("GlobalAveragePool", [feat], ["post/pooled4"]))
        feat = "post/pooled4"
    back_nodes += [
        helper.make_node("Flatten", [feat], ["post/flat"], axis=1),
        helper.make_node("LpNormalization", ["post/flat"], [OUTPUT_NAME], axis=1, p=2),
    ]
    gem_constants = [
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "post/eps"),
        numpy_helper.from_array(np.array(GEM_P, dtype=np.float32), "post/p"),
        numpy_helper.from_array(np.array(1.0 / GEM_P, dtype=np.float32), "post/inv_p"),
    ]
    return helper.make_graph(
        back_nodes,
        "back",
        [helper.make_tensor_value_info("post/in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", None])],
        initializer=gem_constants if pooling == "gem" else [],
    )
