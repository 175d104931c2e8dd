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
from pathlib import Path

import numpy as np

from model.backbones.base import Backbone, get_backbone
from model.contracts.errors import VisualSearchError
from model.contracts.model_file import VARIANTS
from model.export.calibration import prepared_views
from model.export.graph import OPSET, FeaturizerGraph, export_onnx
from model.export.parity import measure
from model.export.quantize import QUANTIZATION
from model.retrieval.pooling import stamp_retrieval
from model.retrieval.query_regions import NO_REGIONS, QueryRegions
from model.retrieval.settings import DEFAULT_POOLING, DEFAULT_QUERY_REGIONS, SettingsMismatch, query_regions_of
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

    with torch.no_grad():
        outs = [graph(torch.from_numpy(frames[i : i + batch])).numpy() for i in range(0, len(frames), batch)]
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


def export_model(
    backbone: str = "efficientnet-lite0",
    out_dir: Path = Path("artifacts/models"),
    variants: Sequence[str] = ("fp32", "int8", "fp16"),
    weights: Path | None = None,
    pooling: str = DEFAULT_POOLING,
    progress: bool = True,
    calibration_images: int = CALIBRATION_IMAGES,
    query_regions: QueryRegions = DEFAULT_QUERY_REGIONS,
) -> dict[str, Path]:
    """Export ``backbone`` to ONNX ``variants`` in ``out_dir``; return variant → ``.onnx`` path.

    Every file has preprocessing inside the graph (uint8 BGR NHWC in, L2-normalized float32 out) and a sidecar
    with parity measured on camera-like views of real photos: fp32 vs torch (must reach cosine ≥ 0.9999, else
    :class:`ExportError`), int8 and fp16 vs fp32 (cosine and nearest-neighbour agreement, recorded).
    ``weights``: a state_dict file; ``None`` uses the backbone's packaged weights. Raises FileNotFoundError /
    ValueError for missing or unfit weights, ValueError for an unknown backbone, variant or pooling.

    ``pooling`` and ``query_regions`` (what the device featurizes of each frame) are the retrieval settings:
    both are stamped into every file's ONNX metadata (so into its hash and model id) and recorded in the
    sidecar (``pooling``, ``extra.retrieval.query_regions``); see :mod:`model.retrieval.settings`.
    """
    wanted = _check_variants(variants)
    spec_backbone = get_backbone(backbone)
    spec = spec_backbone.spec
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    network = spec_backbone.build(weights)
    graph = FeaturizerGraph(network, spec, pooling=pooling).eval()
    parity_frames = prepared_views(spec.input_size, PARITY_IMAGES, PARITY_SEED)
    torch_ref = _run_torch(graph, parity_frames)

    paths: dict[str, Path] = {}
    retrieval = {"query_regions": query_regions.model_dump(mode="json")}
    legacy = pooling == "avg" and query_regions == NO_REGIONS

    def stamp(path: Path) -> None:
        # An avg / whole-frame export stays byte-identical to the exports made before the stamp existed.
        if not legacy:
            stamp_retrieval(path, {"pooling": pooling, **retrieval})

    fp32 = model_path(out_dir, spec.name, "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in SAME padding are expected
        export_onnx(graph, fp32, spec.input_size)
    stamp(fp32)
    fp32_out = _run_onnx(fp32, parity_frames)
    fp32_parity = measure("torch fp32", torch_ref, fp32_out)
    if fp32_parity.cosine_min < FP32_MIN_COSINE:
        raise ExportError(
            f"{fp32}: ONNX fp32 differs from torch (min cosine {fp32_parity.cosine_min:.6f} < {FP32_MIN_COSINE})"
        )
    _write_sidecar(
        fp32,
        spec_backbone,
        "fp32",
        pooling,
        weights,
        [fp32_parity],
        {"parity_seed": PARITY_SEED, "retrieval": retrieval},
    )
    if "fp32" in wanted:
        paths["fp32"] = fp32
    log.info("fp32 %s: cosine vs torch min %.6f", fp32, fp32_parity.cosine_min)

    if "int8" in wanted:
        from model.export.quantize import quantize_int8

        int8 = model_path(out_dir, spec.name, "int8")
        frames = prepared_views(spec.input_size, calibration_images, CALIBRATION_SEED)
        quantize_int8(fp32, int8, frames, progress=progress)
        stamp(int8)
        int8_out = _run_onnx(int8, parity_frames)
        extra: dict[str, object] = {
            "calibration": f"{calibration_images} camera-like views of real photos (seed {CALIBRATION_SEED})",
            "quantization": QUANTIZATION,
            "retrieval": retrieval,
        }
        _write_sidecar(
            int8,
            spec_backbone,
            "int8",
            pooling,
            weights,
            [measure("onnx fp32", fp32_out, int8_out), measure("torch fp32", torch_ref, int8_out)],
            extra,
        )
        paths["int8"] = int8

    if "fp16" in wanted:
        fp16 = model_path(out_dir, spec.name, "fp16")
        half_graph = FeaturizerGraph(spec_backbone.build(weights), spec, pooling=pooling, half=True).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(half_graph, fp16, spec.input_size)
        stamp(fp16)
        fp16_out = _run_onnx(fp16, parity_frames)
        _write_sidecar(
            fp16,
            spec_backbone,
            "fp16",
            pooling,
            weights,
            [measure("onnx fp32", fp32_out, fp16_out)],
            {"note": "float16 backbone, uint8 in / float32 out; meant for GPU providers", "retrieval": retrieval},
        )
        paths["fp16"] = fp16

    if "fp32" not in wanted:
        # fp32 is the parent of the others; keep it only when asked for.
        fp32.unlink(missing_ok=True)
        Path(str(fp32)[:-5] + ".json").unlink(missing_ok=True)
    return paths


def is_valid_export(
    path: Path,
    backbone: str,
    variant: str,
    pooling: str = DEFAULT_POOLING,
    query_regions: QueryRegions = DEFAULT_QUERY_REGIONS,
) -> bool:
    """True when ``path`` and its sidecar exist, agree (hash) and describe this backbone/variant/pooling/regions."""
    if not Path(path).exists():
        return False
    try:
        sidecar = read_sidecar(path)
    except SidecarError:
        return False
    try:
        regions = query_regions_of(sidecar)
    except SettingsMismatch:
        return False
    return (
        sidecar.backbone == backbone
        and sidecar.variant == variant
        and sidecar.pooling == pooling
        and regions == query_regions
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
) -> dict[str, Path]:
    """Variant → path of a valid export in ``out_dir``; exports only what is missing or stale (idempotent)."""
    wanted = _check_variants(variants)
    out_dir = Path(out_dir)
    with _dir_lock(out_dir):
        missing = [
            v
            for v in wanted
            if not is_valid_export(model_path(out_dir, backbone, v), backbone, v, pooling, query_regions)
        ]
        if missing:
            log.info("exporting %s %s into %s", backbone, ",".join(missing), out_dir)
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
            )
    return {v: model_path(out_dir, backbone, v) for v in wanted}
