"""int8 variant: onnxruntime static QDQ, per-channel, U8S8 with 7-bit weights, calibrated on camera-like views.

U8S8 (uint8 activations, int8 weights) because performance.md measured the ``quantize_static`` default S8S8
barely faster than fp32 on this CPU, and U8S8 at 5× torch eager. Weights use 7 bits (``reduce_range``): on x86
CPUs without VNNI (AVX2 and AVX-512F alone, common on edge boxes) onnxruntime's and OpenVINO's U8S8 kernels
multiply with ``vpmaddubsw``, whose int16 pair sums saturate with full-range weights. Measured on an AVX2-only
EPYC, 64 camera-like views, cosine to fp32 (mean / min): 8-bit weights 0.910 / 0.687, 7-bit 0.959 / 0.747 (the
onnxruntime quantization guide, "When to use reduce-range": designed for U8S8 on non-VNNI machines). U8U8
avoids the saturation too (0.986) but ran 6× slower there, so it is not used. The uint8 → float preprocessing (Cast,
Transpose, Slice, Sub, Div) and the L2 normalization behind the pooling stay float: they cost nothing and
quantizing the normalization would only add error to every vector.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from model.contracts.model_file import INPUT_NAME
from model.logs import log_event

log = logging.getLogger(__name__)

QUANTIZATION = "onnxruntime quantize_static QDQ, per-channel, U8S8, 7-bit weights (reduce_range), MinMax"
"""Recorded in the int8 sidecar; an int8 file quantized any other way is re-exported by ``ensure_exported``."""

# Ops that carry the network's arithmetic; everything else (preprocessing, pooling, normalization) stays float.
OPS_TO_QUANTIZE = ("Conv", "Add", "Clip", "Pad", "GlobalAveragePool", "MatMul", "Gemm")


class _ArrayReader:
    """onnxruntime ``CalibrationDataReader`` over prepared frames, one batch at a time, with a progress bar."""

    def __init__(self, frames: np.ndarray, batch: int, progress: bool) -> None:
        from tqdm import tqdm

        self._frames = frames
        self._batch = batch
        self._pos = 0
        self._bar = tqdm(total=len(frames), desc="calibrating int8", unit="img", disable=not progress, leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._frames):
            self._bar.close()
            return None
        chunk = self._frames[self._pos : self._pos + self._batch]
        self._pos += len(chunk)
        self._bar.update(len(chunk))
        return {INPUT_NAME: chunk}

    def rewind(self) -> None:
        self._pos = 0


def _float_frontier_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of nodes before the first Conv and after the last Conv: preprocessing and pooling/normalization."""
    names = [n.name for n in model.graph.node]
    conv_positions = [i for i, n in enumerate(model.graph.node) if n.op_type == "Conv"]
    if not conv_positions:
        return []
    first, last = conv_positions[0], conv_positions[-1]
    keep_float = names[:first] + [n.name for n in model.graph.node[last + 1 :] if n.op_type not in ("Clip",)]
    return [n for n in keep_float if n]


def quantize_int8(fp32_path: Path, out_path: Path, frames: np.ndarray, progress: bool = True) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``out_path`` (atomically), calibrated on ``frames``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="vs-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Folds BatchNorm into Conv and infers shapes, so the calibrator sees the graph ORT will run.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        pre_model = onnx.load(str(pre))
        exclude = _float_frontier_nodes(pre_model)
        for i, node in enumerate(pre_model.graph.node):
            if not node.name:  # nodes_to_exclude works by name
                node.name = f"{node.op_type}_{i}"
        onnx.save(pre_model, str(pre))
        staged = out_path.with_name(out_path.name + ".tmp")
        quantize_static(
            str(pre),
            str(staged),
            _ArrayReader(frames, batch=8, progress=progress),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(OPS_TO_QUANTIZE),
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,
            extra_options={"CalibMovingAverage": False},
        )
        staged.replace(out_path)
    log_event(log, "int8_model_written", path=str(out_path), calibration_frames=len(frames))
    return out_path
