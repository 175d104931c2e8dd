"""Catalog adaptation, second form: fine-tune the backbone's last blocks on the catalog, export, calibrate int8
on the catalog's own views. The device then needs the new model and the catalog a re-index with it.

Each catalog item is a class; training views come from :mod:`model.adapt.views`, prepared exactly as the device
prepares frames (the model's crop). The loss is the head's (:mod:`model.adapt.head`): the ArcFace margin on the
best region's cosine to learned class centres, here directly on the model's own region vectors (no projection).
BatchNorm statistics stay fixed (the exported graph uses them). The frozen trunk runs once per view and its
output is kept in memory, so an epoch only runs the last blocks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.adapt.pipeline import item_views
from model.prepare import Roi, prepare_frame
from model.retrieval.query_regions import QueryRegions
from model.retrieval.regions import RegionSet


@dataclass(frozen=True)
class FinetuneSettings:
    views_per_item: int = 60
    blocks: int = 3
    """Last MBConv blocks trained (with the head conv); the rest stays frozen."""
    epochs: int = 4
    batch: int = 32
    lr: float = 2e-4
    margin: float = 0.2
    scale: float = 24.0
    seed: int = 0
    calibration_frames: int = 96

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prepared(
    images: Sequence[np.ndarray], settings: FinetuneSettings, size: int, roi: Roi | None
) -> tuple[np.ndarray, np.ndarray]:
    frames, labels = [], []
    for item in range(len(images)):
        for view in item_views(images, item, settings.views_per_item, settings.seed):
            frames.append(prepare_frame(view, size, roi))
            labels.append(item)
    return np.stack(frames), np.array(labels, dtype=np.int64)


def finetune_catalog(
    images: Sequence[np.ndarray],
    out_dir: Path,
    *,
    backbone: str = "efficientnet-lite0",
    pooling: str = "avg",
    query_regions: QueryRegions,
    regions: RegionSet,
    settings: FinetuneSettings = FinetuneSettings(),
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Fine-tune on ``images`` (one class each), export int8 calibrated on their views; → (model path, report)."""
    import torch

    from model.backbones.base import get_backbone
    from model.backbones.efficientnet_lite import EfficientNetLite
    from model.export.api import export_model
    from model.export.graph import FeaturizerGraph
    from model.retrieval.settings import device_roi

    started = time.perf_counter()
    chosen = get_backbone(backbone)
    network = chosen.classifier(None)  # the whole EfficientNetLite: its state_dict is what export --weights takes
    if not isinstance(network, EfficientNetLite):
        raise ValueError(f"fine-tuning the last blocks supports the EfficientNet-Lite backbones, not {backbone}")
    graph = FeaturizerGraph(chosen.build(None), chosen.spec, pooling, regions=regions).eval()
    frames, labels = _prepared(images, settings, chosen.spec.input_size, device_roi(query_regions))
    split = len(network._blocks) - settings.blocks
    torch.manual_seed(settings.seed)
    trunk, whole = _frozen_trunk(network, graph, frames, images, chosen.spec.input_size, split, progress)
    history = _train_tail(network, trunk, whole, labels, split, regions, settings, progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "finetuned-backbone.pt"
    torch.save(network.state_dict(), weights)
    pick = np.random.default_rng(settings.seed).permutation(len(frames))[: settings.calibration_frames]
    paths = export_model(
        backbone,
        out_dir,
        ("int8",),
        weights=weights,
        pooling=pooling,
        query_regions=query_regions,
        regions=regions,
        progress=progress,
        calibration_frames=frames[np.sort(pick)],
        calibration_source=f"{len(pick)} training views of the user's catalog ({len(images)} items)",
    )
    report = {"settings": settings.as_dict(), "loss": history, "seconds": round(time.perf_counter() - started, 1)}
    return paths["int8"], report


def _frozen_trunk(
    network: Any, graph: Any, frames: np.ndarray, images: Sequence[np.ndarray], size: int, split: int, progress: bool
) -> tuple[Any, Any]:
    """(the frozen blocks' output for every training view, the catalog images' whole-map vectors: class centres)."""
    import torch
    from tqdm import tqdm

    with torch.no_grad():  # the frozen trunk once per view, through the exporter's own front
        trunk = torch.cat(
            [
                network.features_until(_front(graph, torch.from_numpy(frames[i : i + 32])), split)
                for i in tqdm(range(0, len(frames), 32), desc="finetune: frozen trunk", disable=not progress)
            ]
        )
        catalog = torch.from_numpy(np.stack([prepare_frame(image, size) for image in images]))
        whole = torch.nn.functional.normalize(network.features(_front(graph, catalog)).mean(dim=(2, 3)), dim=1)
    return trunk, whole


def _train_tail(
    network: Any,
    trunk: Any,
    whole: Any,
    labels: np.ndarray,
    split: int,
    regions: RegionSet,
    settings: FinetuneSettings,
    progress: bool,
) -> list[float]:
    """Train the last blocks with the ArcFace margin on the best region's cosine; → mean loss per epoch."""
    import torch
    from tqdm import tqdm

    from model.export.graph import pool_regions

    tail = [*network._blocks[split:], network._conv_head, network._bn1]
    params = [p for module in tail for p in module.parameters()]
    centres = torch.nn.Parameter(whole.clone())
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": settings.lr}, {"params": [centres], "lr": 10 * settings.lr}]
    )
    network.eval()  # BatchNorm running statistics stay as exported
    cos_m, sin_m = float(np.cos(settings.margin)), float(np.sin(settings.margin))
    history = []
    for epoch in tqdm(range(settings.epochs), desc="finetune: epochs", disable=not progress):
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(trunk))
        total = 0.0
        for begin in range(0, len(order), settings.batch):
            idx = torch.from_numpy(order[begin : begin + settings.batch])
            y = torch.from_numpy(labels[order[begin : begin + settings.batch]])
            z = pool_regions(network.features_from(trunk[idx], split), regions)  # [B, R, D]
            cos = torch.einsum("brd,cd->brc", z, torch.nn.functional.normalize(centres, dim=1)).amax(dim=1)
            true = cos.gather(1, y[:, None]).clamp(-1 + 1e-6, 1 - 1e-6)
            with_margin = true * cos_m - torch.sqrt(1 - true * true) * sin_m
            loss = torch.nn.functional.cross_entropy(cos.scatter(1, y[:, None], with_margin) * settings.scale, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        history.append(round(total / len(order), 4))
    return history


def _front(graph: Any, batch: Any) -> Any:
    """The exporter's input handling (uint8 BGR NHWC → normalized float NCHW), without the backbone."""
    import torch

    x = batch.to(torch.float32).permute(0, 3, 1, 2)
    if graph.swap_rb:
        x = torch.flip(x, dims=[1])
    return (x - graph.norm_mean) / graph.norm_std
