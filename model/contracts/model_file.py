"""The model file contract shared by export, device and cloud (docs/architecture.md, "Featurizer model file and sidecar")."""

from __future__ import annotations

INPUT_NAME = "image"
"""uint8 ``[N, S, S, 3]`` in BGR (OpenCV) order; all scaling and normalization happen inside the graph."""

OUTPUT_NAME = "embedding"
"""float32 ``[N, D]``, L2-normalized."""

VARIANTS = ("fp32", "int8", "fp16")

SIDECAR_SUFFIX = ".json"


def sidecar_path_for(model_path: str) -> str:
    """``foo.onnx`` → ``foo.json``: the sidecar sits beside the model with the same stem."""
    stem = model_path[:-5] if model_path.endswith(".onnx") else model_path
    return stem + SIDECAR_SUFFIX
