"""The export wrapper: every backbone gets the same front (uint8 BGR NHWC → normalized float NCHW) and back
(global pooling → L2 normalization), so preprocessing lives inside the graph (docs/architecture.md, model file contract).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.backbones.base import BackboneSpec
from model.contracts.model_file import INPUT_NAME, OUTPUT_NAME
from model.retrieval.regions import REGIONS_OUTPUT, SINGLE_REGION, RegionSet, region_boxes

POOLINGS = ("avg", "gem", "max", "rmac", "rgem")
"""avg/gem here; max, rmac and rgem (regional) from :mod:`model.retrieval.pooling` (held-up-object matching)."""
OPSET = 17
"""Stable with the TorchScript exporter, onnxruntime 1.31 quantization and OpenVINO 2026."""

GEM_P = 3.0


def global_pool(feature_map: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[N, C, H, W]`` → ``[N, C]``. ``gem``: generalized mean with p = 3 (features are ≥ 0 after ReLU6)."""
    if pooling == "avg":
        return feature_map.mean(dim=(2, 3))
    if pooling == "gem":
        return feature_map.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
    if pooling in POOLINGS:
        from model.retrieval.pooling import pool_map

        return pool_map(feature_map, pooling)
    raise ValueError(f"unknown pooling '{pooling}' (known: {', '.join(POOLINGS)})")


class FeaturizerGraph(nn.Module):
    """uint8 ``[N, S, S, 3]`` BGR → float32 ``[N, D]`` L2-normalized, around a feature-map ``backbone``.

    ``half=True`` runs the backbone in float16 while the preprocessing, pooling and normalization stay in
    float32 (the fp16 variant for GPUs: uint8 in, float32 out, like every other variant).
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        pooling: str = "avg",
        half: bool = False,
        regions: RegionSet = SINGLE_REGION,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (known: {', '.join(POOLINGS)})")
        if spec.color_order not in ("RGB", "BGR"):
            raise ValueError(f"backbone {spec.name}: color_order must be RGB or BGR, got {spec.color_order}")
        self.backbone = backbone.half() if half else backbone
        self.spec = spec
        self.pooling = pooling
        self.use_half = half
        self.regions = regions
        # Mean/std are given in the backbone's colour order; the input arrives BGR.
        self.norm_mean: torch.Tensor
        self.norm_std: torch.Tensor
        self.register_buffer("norm_mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("norm_std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.swap_rb = spec.color_order == "RGB"

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """The front and the backbone, before pooling: ``[N, C, H, W]`` (pooling experiments reuse it)."""
        x = image.to(torch.float32).permute(0, 3, 1, 2)
        if self.swap_rb:
            x = torch.flip(x, dims=[1])
        x = (x - self.norm_mean) / self.norm_std
        if self.use_half:
            x = x.half()
        return self.backbone(x)  # type: ignore[no-any-return]

    @property
    def has_regions(self) -> bool:
        return not self.regions.is_single

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        fmap = self.feature_map(image)
        embedding = F.normalize(global_pool(fmap, self.pooling).float(), p=2.0, dim=1, eps=1e-12)
        if not self.has_regions:
            return embedding
        return embedding, pool_regions(fmap.float(), self.regions)


def pool_regions(feature_map: torch.Tensor, regions: RegionSet) -> torch.Tensor:
    """``[N, C, H, W]`` → ``[N, R, C]``: each region's average, L2-normalized (fixed slices: plain ONNX ops)."""
    height, width = int(feature_map.shape[2]), int(feature_map.shape[3])
    vectors = [
        feature_map[:, :, y0:y1, x0:x1].mean(dim=(2, 3)) for y0, y1, x0, x1 in region_boxes(height, width, regions)
    ]
    return F.normalize(torch.stack(vectors, dim=1), p=2.0, dim=2, eps=1e-12)


def export_onnx(graph: FeaturizerGraph, path: Path, input_size: int, opset: int = OPSET) -> Path:
    """Trace ``graph`` to ONNX with a dynamic batch axis; write atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    dummy = torch.zeros((2, input_size, input_size, 3), dtype=torch.uint8)
    outputs = [OUTPUT_NAME, REGIONS_OUTPUT] if graph.has_regions else [OUTPUT_NAME]
    with torch.no_grad():
        torch.onnx.export(
            graph.eval(),
            (dummy,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "N"}, **{name: {0: "N"} for name in outputs}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    tmp.replace(path)
    return path
