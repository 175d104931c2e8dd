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

import datetime as dt
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.backbones.base import get_backbone
from model.export.graph import GEM_P, OPSET, FeaturizerGraph, export_onnx
from model.sidecar import Normalization, Sidecar, file_sha256, make_model_id, write_sidecar

log = logging.getLogger(__name__)

POOLINGS = ("avg", "gem", "max", "rmac", "rgem")
RMAC_LEVELS = 3


def region_boxes(height: int, width: int, levels: int = RMAC_LEVELS) -> list[tuple[int, int, int, int]]:
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
        for y0, y1, x0, x1 in region_boxes(height, width):
            region = feature_map[:, :, y0:y1, x0:x1]
            vec = region.amax(dim=(2, 3)) if pooling == "rmac" else _gem(region, (2, 3))
            total = total + F.normalize(vec, p=2.0, dim=1, eps=1e-6)
        return total
    raise ValueError(f"unknown pooling '{pooling}' (known: {', '.join(POOLINGS)})")


class PooledGraph(FeaturizerGraph):
    """The exporter's graph (same front: uint8 BGR NHWC in, normalization inside) with any of :data:`POOLINGS`."""

    def __init__(self, backbone: torch.nn.Module, spec: Any, pooling: str = "avg") -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (known: {', '.join(POOLINGS)})")
        super().__init__(backbone, spec, pooling="avg")
        self.pooling = pooling

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32).permute(0, 3, 1, 2)
        if self.swap_rb:
            x = torch.flip(x, dims=[1])
        return self.backbone((x - self.norm_mean) / self.norm_std)  # type: ignore[no-any-return]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(pool_map(self.feature_map(image), self.pooling), p=2.0, dim=1, eps=1e-12)


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


def export_pooled(
    pooling: str,
    out_dir: Path,
    backbone: str = "efficientnet-lite0",
    variants: Sequence[str] = ("int8",),
    calibration_images: int = 48,
    retrieval: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Export ``backbone`` with ``pooling`` to ``<backbone>-<pooling>-<variant>.onnx`` + sidecars in ``out_dir``.

    The sidecar records ``pooling`` and, under ``extra.retrieval``, the retrieval settings (query regions)
    the device must apply; fp32 is checked against torch like the main exporter does.
    """
    from model.export.api import FP32_MIN_COSINE, PARITY_IMAGES, PARITY_SEED, _run_onnx, _run_torch
    from model.export.calibration import prepared_views
    from model.export.parity import measure

    chosen = get_backbone(backbone)
    spec = chosen.spec
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = PooledGraph(chosen.build(None), spec, pooling).eval()
    parity_frames = prepared_views(spec.input_size, PARITY_IMAGES // 2, PARITY_SEED)
    reference = _run_torch(graph, parity_frames)
    fp32 = out_dir / f"{spec.name}-{pooling}-fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(graph, fp32, spec.input_size)
    stamp_retrieval(fp32, {"pooling": pooling, **(retrieval or {})})
    fp32_out = _run_onnx(fp32, parity_frames)
    parity = measure("torch fp32", reference, fp32_out)
    if parity.cosine_min < FP32_MIN_COSINE:
        raise RuntimeError(f"{fp32}: ONNX differs from torch (min cosine {parity.cosine_min:.6f})")
    paths: dict[str, Path] = {}

    def sidecar(path: Path, variant: str, parities: list[Any]) -> None:
        sha = file_sha256(path)
        write_sidecar(
            path,
            Sidecar(
                model_id=make_model_id(spec.name, variant, sha),
                backbone=spec.name,
                variant=variant,  # type: ignore[arg-type]
                dim=spec.dim,
                input_size=spec.input_size,
                opset=OPSET,
                normalization=Normalization(
                    color_order=spec.color_order,  # type: ignore[arg-type]
                    mean=list(spec.mean),
                    std=list(spec.std),
                ),
                pooling=pooling,
                weights_source=spec.weights_source,
                weights_license=spec.weights_license,
                sha256=sha,
                parity=parities,
                exported_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                extra={"retrieval": retrieval or {}, "exporter": "model.heldup.pooling.export_pooled"},
            ),
        )

    sidecar(fp32, "fp32", [parity])
    paths["fp32"] = fp32
    if "int8" in variants:
        from model.export.quantize import quantize_int8

        int8 = out_dir / f"{spec.name}-{pooling}-int8.onnx"
        frames = prepared_views(spec.input_size, calibration_images, 0)
        quantize_int8(fp32, int8, frames, progress=progress)
        stamp_retrieval(int8, {"pooling": pooling, **(retrieval or {})})
        sidecar(int8, "int8", [measure("onnx fp32", fp32_out, _run_onnx(int8, parity_frames))])
        paths["int8"] = int8
    if "fp32" not in variants:
        paths.pop("fp32")
    return paths
