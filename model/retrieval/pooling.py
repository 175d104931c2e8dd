"""Pooling of the backbone's feature map, as alternatives to plain global average pooling — inside the graph.

- ``avg``: global average (the ImageNet classifier's pooling; the current default).
- ``gem``: generalized mean, p = 3 (Radenović et al.): leans towards the strongest activations, so a small
  object's response is not averaged away by the background.
- ``max``: global max (MAC).
- ``rmac``: R-MAC (Tolias et al.): max over square regions at 3 scales (1 + 4 + 9 regions on a 7×7 map),
  each region vector L2-normalized, then summed — a multi-scale / regional descriptor.
- ``rgem``: the same regions with GeM instead of max.

All are fixed slices and reductions, so they trace to plain ONNX ops (ReduceMean/ReduceMax/Pow/Slice).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.export.graph import GEM_P

log = logging.getLogger(__name__)

POOLINGS = ("avg", "gem", "max", "rmac", "rgem")
RMAC_LEVELS = 3


def rmac_boxes(height: int, width: int, levels: int = RMAC_LEVELS) -> list[tuple[int, int, int, int]]:
    """R-MAC's square regions (y0, y1, x0, x1): level l has l×l regions of side 2·min(H, W)/(l + 1)."""
    boxes: list[tuple[int, int, int, int]] = []
    short = min(height, width)
    for level in range(1, levels + 1):
        side = max(1, round(2 * short / (level + 1))) if level > 1 else short
        ys = np.linspace(0, height - side, level).round().astype(int) if level > 1 else [(height - side) // 2]
        xs = np.linspace(0, width - side, level).round().astype(int) if level > 1 else [(width - side) // 2]
        for y in ys:
            for x in xs:
                boxes.append((int(y), int(y) + side, int(x), int(x) + side))
    return boxes


def _gem(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return x.clamp(min=1e-6).pow(GEM_P).mean(dim=dims).pow(1.0 / GEM_P)


def pool_map(feature_map: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[N, C, H, W]`` → ``[N, C]`` (not yet L2-normalized)."""
    if pooling == "avg":
        return feature_map.mean(dim=(2, 3))
    if pooling == "gem":
        return _gem(feature_map, (2, 3))
    if pooling == "max":
        return feature_map.amax(dim=(2, 3))
    if pooling in ("rmac", "rgem"):
        height, width = int(feature_map.shape[2]), int(feature_map.shape[3])
        total = torch.zeros(feature_map.shape[:2], dtype=feature_map.dtype, device=feature_map.device)
        for y0, y1, x0, x1 in rmac_boxes(height, width):
            region = feature_map[:, :, y0:y1, x0:x1]
            vec = region.amax(dim=(2, 3)) if pooling == "rmac" else _gem(region, (2, 3))
            total = total + F.normalize(vec, p=2.0, dim=1, eps=1e-6)
        return total
    raise ValueError(f"unknown pooling '{pooling}' (known: {', '.join(POOLINGS)})")


RETRIEVAL_METADATA_KEY = "visualsearch.retrieval"


def stamp_retrieval(path: Path, retrieval: dict[str, Any]) -> None:
    """Write the retrieval settings into the ONNX file's metadata, so they are part of its hash (model id).

    Query regions are not graph ops; stamping them into the file still makes a model with other settings a
    different model id, which the search refuses — the device sends only the model id, not its sidecar.
    """
    import json

    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = RETRIEVAL_METADATA_KEY
    entry.value = json.dumps(retrieval, sort_keys=True, separators=(",", ":"))
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
