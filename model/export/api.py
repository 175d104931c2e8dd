"""Public export API (stable; other packages and tests call it).

- :func:`export_model` — backbone → ``<backbone>-fp32.onnx``, ``-int8.onnx``, ``-fp16.onnx`` + JSON sidecars,
  with parity measured on real photos and written into each sidecar.
- :func:`ensure_exported` — the same, but only for variants without a valid file+sidecar (idempotent; safe
  to call from several processes at once: a file lock serializes exporters on one directory).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.backbones.base import Backbone, get_backbone
from model.contracts.errors import VisualSearchError
from model.contracts.model_file import VARIANTS
from model.export.calibration import prepared_views
from model.export.graph import OPSET, FeaturizerGraph, export_onnx
from model.export.parity import measure
from model.export.quantize import QUANTIZATION
from model.logs import log_event
from model.retrieval.pooling import stamp_retrieval
from model.retrieval.query_regions import NO_REGIONS, QueryRegions
from model.retrieval.regions import RegionSet
from model.retrieval.settings import (
    DEFAULT_POOLING,
    DEFAULT_QUERY_REGIONS,
    DEFAULT_REGIONS,
    SettingsMismatch,
    query_regions_of,
    regions_of,
)
from model.sidecar import (
    Normalization,
    Parity,
    Sidecar,
    SidecarError,
    file_sha256,
    make_model_id,
    read_sidecar,
    write_sidecar,
)

log = logging.getLogger(__name__)

FP32_MIN_COSINE = 0.9999
"""fp32 ONNX vs torch: anything lower means the export changed the network (a padding or op mismatch)."""

CALIBRATION_IMAGES = 96
PARITY_IMAGES = 64
CALIBRATION_SEED = 0
PARITY_SEED = 1234


class ExportError(VisualSearchError, RuntimeError):
    """The export produced a model that does not match its reference."""


def model_path(out_dir: Path, backbone: str, variant: str) -> Path:
    return Path(out_dir) / f"{backbone}-{variant}.onnx"


def _check_variants(variants: Sequence[str]) -> list[str]:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(variants))


def _run_onnx(path: Path, frames: np.ndarray, batch: int = 16) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    outs = [session.run(None, {"image": frames[i : i + batch]})[0] for i in range(0, len(frames), batch)]
    return np.concatenate(outs).astype(np.float32)


def _run_torch(graph: FeaturizerGraph, frames: np.ndarray, batch: int = 16) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            out = graph(torch.from_numpy(frames[i : i + batch]))
            outs.append((out[0] if isinstance(out, tuple) else out).numpy())
    return np.concatenate(outs).astype(np.float32)


def _write_sidecar(
    path: Path,
    backbone: Backbone,
    variant: str,
    pooling: str,
    weights: Path | None,
    parity: list[Parity],
    extra: dict[str, object],
) -> None:
    spec = backbone.spec
    sha = file_sha256(path)
    source = (
        spec.weights_source if weights is None else f"file {Path(weights).name} (sha256 {file_sha256(weights)[:12]})"
    )
    write_sidecar(
        path,
        Sidecar(
            model_id=make_model_id(spec.name, variant, sha),
            backbone=spec.name,
            variant=variant,  # type: ignore[arg-type]
            dim=spec.dim,
            input_size=spec.input_size,
            opset=OPSET,
            normalization=Normalization(color_order=spec.color_order, mean=list(spec.mean), std=list(spec.std)),  # type: ignore[arg-type]
            pooling=pooling,
            weights_source=source,
            weights_license=spec.weights_license if weights is None else "as given by the weights' owner",
            sha256=sha,
            parity=parity,
            exported_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            extra=extra,
        ),
    )


@dataclass
class _Export:
    """One export run's fixed inputs, shared by the variant stages."""

    backbone: Backbone
    out_dir: Path
    weights: Path | None
    pooling: str
    regions: RegionSet
    retrieval: dict[str, Any]
    parity_frames: np.ndarray
    torch_ref: np.ndarray

    @property
    def legacy(self) -> bool:
        # An avg / whole-frame export stays byte-identical to the exports made before the stamp existed.
        return self.pooling == "avg" and self.retrieval == {"query_regions": NO_REGIONS.model_dump(mode="json")}

    def stamp(self, path: Path) -> None:
        if not self.legacy:
            stamp_retrieval(path, {"pooling": self.pooling, **self.retrieval})

    def sidecar(self, path: Path, variant: str, parity: list[Parity], extra: dict[str, object]) -> None:
        _write_sidecar(
            path, self.backbone, variant, self.pooling, self.weights, parity, {**extra, "retrieval": self.retrieval}
        )

    def graph(self, half: bool = False) -> FeaturizerGraph:
        network = self.backbone.build(self.weights)
        spec = self.backbone.spec
        return FeaturizerGraph(network, spec, pooling=self.pooling, half=half, regions=self.regions).eval()


def _export_fp32(job: _Export, graph: FeaturizerGraph) -> tuple[Path, np.ndarray]:
    spec = job.backbone.spec
    fp32 = model_path(job.out_dir, spec.name, "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in SAME padding are expected
        export_onnx(graph, fp32, spec.input_size)
    job.stamp(fp32)
    fp32_out = _run_onnx(fp32, job.parity_frames)
    parity = measure("torch fp32", job.torch_ref, fp32_out)
    if parity.cosine_min < FP32_MIN_COSINE:
        raise ExportError(
            f"{fp32}: ONNX fp32 differs from torch (min cosine {parity.cosine_min:.6f} < {FP32_MIN_COSINE})"
        )
    job.sidecar(fp32, "fp32", [parity], {"parity_seed": PARITY_SEED})
    log_event(log, "export_fp32_parity", path=str(fp32), cosine_min=round(float(parity.cosine_min), 6))
    return fp32, fp32_out


def _export_int8(
    job: _Export, fp32: Path, fp32_out: np.ndarray, frames: np.ndarray, calibration: str, progress: bool
) -> Path:
    from model.export.quantize import quantize_int8

    int8 = model_path(job.out_dir, job.backbone.spec.name, "int8")
    quantize_int8(fp32, int8, frames, progress=progress)
    job.stamp(int8)
    int8_out = _run_onnx(int8, job.parity_frames)
    parity = [measure("onnx fp32", fp32_out, int8_out), measure("torch fp32", job.torch_ref, int8_out)]
    job.sidecar(int8, "int8", parity, {"calibration": calibration, "quantization": QUANTIZATION})
    return int8


def _export_fp16(job: _Export, fp32_out: np.ndarray) -> Path:
    spec = job.backbone.spec
    fp16 = model_path(job.out_dir, spec.name, "fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(job.graph(half=True), fp16, spec.input_size)
    job.stamp(fp16)
    fp16_out = _run_onnx(fp16, job.parity_frames)
    note = "float16 backbone, uint8 in / float32 out; meant for GPU providers"
    job.sidecar(fp16, "fp16", [measure("onnx fp32", fp32_out, fp16_out)], {"note": note})
    return fp16


def export_model(
    backbone: str = "efficientnet-lite0",
    out_dir: Path = Path("artifacts/models"),
    variants: Sequence[str] = ("fp32", "int8", "fp16"),
    weights: Path | None = None,
    pooling: str = DEFAULT_POOLING,
    progress: bool = True,
    calibration_images: int = CALIBRATION_IMAGES,
    query_regions: QueryRegions = DEFAULT_QUERY_REGIONS,
    regions: RegionSet = DEFAULT_REGIONS,
    calibration_frames: np.ndarray | None = None,
    calibration_source: str = "",
) -> dict[str, Path]:
    """Export ``backbone`` to ONNX ``variants`` in ``out_dir``; return variant → ``.onnx`` path.

    Every file has preprocessing inside the graph (uint8 BGR NHWC in, L2-normalized float32 out) and a sidecar
    with parity measured on camera-like views of real photos: fp32 vs torch (must reach cosine ≥ 0.9999, else
    :class:`ExportError`), int8 and fp16 vs fp32 (cosine and nearest-neighbour agreement, recorded).
    ``weights``: a state_dict file; ``None`` uses the backbone's packaged weights. Raises FileNotFoundError /
    ValueError for missing or unfit weights, ValueError for an unknown backbone, variant or pooling.

    ``pooling``, ``query_regions`` (what the device featurizes of each frame) and ``regions`` (the region
    vectors pooled from one inference) are the retrieval settings: stamped into every file's ONNX metadata
    (so into its hash and model id) and recorded in the sidecar (``pooling``, ``extra.retrieval``); see
    :mod:`model.retrieval.settings`.

    ``calibration_frames`` (uint8 ``[N, S, S, 3]`` prepared frames, e.g. views of the user's own catalog)
    calibrate the int8 variant instead of the generic photos; ``calibration_source`` says in the sidecar
    what they are.
    """
    wanted = _check_variants(variants)
    chosen = get_backbone(backbone)
    spec = chosen.spec
    if calibration_frames is not None:
        calibration_frames = _check_calibration(calibration_frames, spec.input_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    retrieval: dict[str, Any] = {"query_regions": query_regions.model_dump(mode="json")}
    if not regions.is_single:
        retrieval["regions"] = regions.model_dump(mode="json")
    parity_frames = prepared_views(spec.input_size, PARITY_IMAGES, PARITY_SEED)
    job = _Export(chosen, out_dir, weights, pooling, regions, retrieval, parity_frames, np.zeros(0))
    graph = job.graph()
    job.torch_ref = _run_torch(graph, parity_frames)
    fp32, fp32_out = _export_fp32(job, graph)
    paths: dict[str, Path] = {"fp32": fp32} if "fp32" in wanted else {}
    if "int8" in wanted:
        frames, source = _calibration(spec.input_size, calibration_images, calibration_frames, calibration_source)
        paths["int8"] = _export_int8(job, fp32, fp32_out, frames, source, progress)
    if "fp16" in wanted:
        paths["fp16"] = _export_fp16(job, fp32_out)
    if "fp32" not in wanted:
        # fp32 is the parent of the others; keep it only when asked for.
        fp32.unlink(missing_ok=True)
        Path(str(fp32)[:-5] + ".json").unlink(missing_ok=True)
    return paths


def _calibration(size: int, count: int, given: np.ndarray | None, source: str) -> tuple[np.ndarray, str]:
    """The int8 calibration frames and what they are: the caller's (e.g. the user's own images) or generic photos."""
    if given is not None:
        return given, source or f"{len(given)} frames given by the caller"
    frames = prepared_views(size, count, CALIBRATION_SEED)
    return frames, f"{count} camera-like views of real photos (seed {CALIBRATION_SEED})"


def _check_calibration(frames: np.ndarray, size: int) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError("calibration_frames must be a uint8 [N, S, S, 3] array of prepared frames")
    if frames.shape[1:] != (size, size, 3) or len(frames) < 8:
        raise ValueError(f"calibration_frames must be [N >= 8, {size}, {size}, 3], got {list(frames.shape)}")
    return np.ascontiguousarray(frames)


def is_valid_export(
    path: Path,
    backbone: str,
    variant: str,
    pooling: str = DEFAULT_POOLING,
    query_regions: QueryRegions = DEFAULT_QUERY_REGIONS,
    regions: RegionSet = DEFAULT_REGIONS,
) -> bool:
    """True when ``path`` and its sidecar exist, agree (hash) and describe this backbone/variant/pooling/regions."""
    if not Path(path).exists():
        return False
    try:
        sidecar = read_sidecar(path)
    except SidecarError:
        return False
    try:
        recorded = (query_regions_of(sidecar), regions_of(sidecar))
    except SettingsMismatch:
        return False
    return (
        sidecar.backbone == backbone
        and sidecar.variant == variant
        and sidecar.pooling == pooling
        and recorded == (query_regions, regions)
        and (variant != "int8" or _quantization_of(sidecar) == QUANTIZATION)
    )


def _quantization_of(sidecar: Sidecar) -> object:
    return sidecar.extra.get("quantization")


@contextlib.contextmanager
def _dir_lock(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".export.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_exported(
    out_dir: Path,
    variants: Sequence[str] = ("fp32", "int8"),
    backbone: str = "efficientnet-lite0",
    weights: Path | None = None,
    pooling: str = DEFAULT_POOLING,
    progress: bool = False,
    query_regions: QueryRegions = DEFAULT_QUERY_REGIONS,
    regions: RegionSet = DEFAULT_REGIONS,
) -> dict[str, Path]:
    """Variant → path of a valid export in ``out_dir``; exports only what is missing or stale (idempotent)."""
    wanted = _check_variants(variants)
    out_dir = Path(out_dir)
    with _dir_lock(out_dir):
        missing = [
            v
            for v in wanted
            if not is_valid_export(model_path(out_dir, backbone, v), backbone, v, pooling, query_regions, regions)
        ]
        if missing:
            log_event(log, "export_started", backbone=backbone, variants=list(missing), out_dir=str(out_dir))
            # fp32 is re-exported as the parent of int8/fp16; keep it when it was already there.
            keep_fp32 = "fp32" in wanted or model_path(out_dir, backbone, "fp32").exists()
            export_model(
                backbone,
                out_dir,
                variants=[*missing, *(["fp32"] if keep_fp32 and "fp32" not in missing else [])],
                weights=weights,
                pooling=pooling,
                progress=progress,
                query_regions=query_regions,
                regions=regions,
            )
    return {v: model_path(out_dir, backbone, v) for v in wanted}
