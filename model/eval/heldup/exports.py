"""Exports of the featurizer under evaluation, one file per pooling, beside (never over) the deployed default."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from model.contracts.model_file import sidecar_path_for
from model.retrieval.query_regions import NO_REGIONS, QueryRegions


def export_pooled(
    pooling: str,
    out_dir: Path,
    backbone: str = "efficientnet-lite0",
    variants: Sequence[str] = ("int8",),
    query_regions: QueryRegions = NO_REGIONS,
    progress: bool = False,
) -> dict[str, Path]:
    """Export ``backbone`` with ``pooling`` to ``<backbone>-<pooling>-<variant>.onnx`` + sidecars in ``out_dir``.

    The one exporter (:func:`model.export.api.export_model`: parity checks, int8, stamps, sidecars) writes into
    a scratch folder; the files are then renamed so every pooling under evaluation has its own name and none
    overwrites the deployed default.
    """
    from model.export.api import export_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        made = export_model(
            backbone, Path(scratch), variants, pooling=pooling, progress=progress, query_regions=query_regions
        )
        for variant, path in made.items():
            target = out_dir / f"{backbone}-{pooling}-{variant}.onnx"
            path.replace(target)
            Path(sidecar_path_for(str(path))).replace(sidecar_path_for(str(target)))
            paths[variant] = target
    return paths
