"""The model file contract shared by export, device and cloud (docs/architecture.md, "Featurizer model file and sidecar")."""

from __future__ import annotations

INPUT_NAME = "image"
"""uint8 ``[N, S, S, 3]`` in BGR (OpenCV) order; all scaling and normalization happen inside the graph."""

OUTPUT_NAME = "embedding"
"""float32 ``[N, D]``, L2-normalized."""

VARIANTS = ("fp32", "int8", "fp16")

SIDECAR_SUFFIX = ".json"

NORM_TOLERANCE = 1e-2
"""How far from 1.0 a vector's L2 norm may be and still count as normalized (float16 on the wire)."""


def sidecar_path_for(model_path: str) -> str:
    """``foo.onnx`` → ``foo.json``: the sidecar sits beside the model with the same stem."""
    stem = model_path[:-5] if model_path.endswith(".onnx") else model_path
    return stem + SIDECAR_SUFFIX
