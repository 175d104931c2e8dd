"""Convert a SageMaker image-classification / Gluon checkpoint to a contract-compliant featurizer.

The MXNet half runs in its own environment (:mod:`model.mxnet.env`) via ``convert_worker.py``; this half
(main environment, no mxnet) wraps the plain ONNX with the uint8 BGR front, pooling and L2
(:func:`model.export.wrap.wrap_onnx_with_preprocessing`, shared with the torch exporter), measures parity against MXNet's own outputs on real photos, and writes the
model and its sidecar — nothing is written unless every step succeeded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from model.contracts.errors import VisualSearchError
from model.logs import log_event
from model.mxnet.env import ensure_mxnet_env
from model.sidecar import Normalization, Parity, Sidecar, file_sha256, make_model_id, write_sidecar

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("convert_worker.py")
WORKER_TIMEOUT_S = 1800
PARITY_MIN_COSINE = 0.999
"""Below this the ONNX graph does not compute what MXNet computes: refuse to write it."""

# SageMaker's image-classification networks start with a BatchNorm on the raw input ("bn_data"), so they
# take RGB pixels 0..255 as they are; Gluon model-zoo networks want ImageNet mean/std instead (pass them).
SAGEMAKER_COLOR_ORDER = "RGB"
SAGEMAKER_MEAN = (0.0, 0.0, 0.0)
SAGEMAKER_STD = (1.0, 1.0, 1.0)


class MxnetConvertError(VisualSearchError, ValueError):
    """The checkpoint cannot be converted; the message names the file, layer or step and why."""


def checkpoint_files(prefix: str | Path, epoch: int) -> tuple[Path, Path]:
    """``PREFIX-symbol.json`` and ``PREFIX-%04d.params`` (MXNet's checkpoint naming), both checked to exist."""
    symbol = Path(f"{prefix}-symbol.json")
    params = Path(f"{prefix}-{epoch:04d}.params")
    for path in (symbol, params):
        if not path.is_file():
            raise FileNotFoundError(f"MXNet checkpoint file {path} does not exist (prefix {prefix}, epoch {epoch})")
    return symbol, params


def _check_inputs(symbol_json: Path, params: Path, input_size: int, layer: str | None) -> None:
    for path, what in ((symbol_json, "symbol"), (params, "params")):
        if not path.exists():
            raise FileNotFoundError(f"MXNet {what} file {path} does not exist")
        if not path.is_file() or path.stat().st_size == 0:
            raise MxnetConvertError(f"MXNet {what} file {path} is empty or not a file")
    try:
        graph = json.loads(symbol_json.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MxnetConvertError(f"symbol file {symbol_json} is not JSON: {exc}") from exc
    if not isinstance(graph, dict) or "nodes" not in graph:
        raise MxnetConvertError(f"symbol file {symbol_json} has no 'nodes': not an MXNet *-symbol.json")
    if input_size < 8:
        raise MxnetConvertError(f"input_size must be ≥ 8 pixels, got {input_size}")
    if layer is not None and not layer.strip():
        raise MxnetConvertError("layer must be a non-empty layer or output name (e.g. flatten0_output)")


def checkpoint_name(symbol_json: Path) -> str:
    """``models/image-classification-symbol.json`` → ``image-classification``."""
    name = symbol_json.name
    for suffix in ("-symbol.json", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "checkpoint"


def parity_photos(size: int) -> tuple[np.ndarray, str]:
    """Real photos (scikit-image's samples, an export dependency) prepared like device frames."""
    from skimage import data

    from model.prepare import prepare_frame

    names = ("chelsea", "astronaut", "coffee", "rocket")
    frames = [np.ascontiguousarray(getattr(data, n)()[..., ::-1]) for n in names]
    return np.stack([prepare_frame(frame, size) for frame in frames]), f"scikit-image {', '.join(names)}"


def _run_worker(python: Path, cmd_args: list[str]) -> None:
    # Isolated mode (-I): no PYTHONPATH, user site or script folder, so the main environment's numpy 2 or
    # the project's modules can never shadow what the MXNet environment pins.
    cmd = [str(python), "-I", str(WORKER), *cmd_args]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MxnetConvertError(f"the MXNet conversion took longer than {WORKER_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        reason = next((ln[len("error: ") :] for ln in reversed(lines) if ln.startswith("error: ")), None)
        if reason is None:
            reason = f"worker exited with code {result.returncode}: {' | '.join(lines[-3:]) or 'no output'}"
        raise MxnetConvertError(reason)


def _onnxruntime_embed(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: images})[0]
    return np.asarray(out, dtype=np.float32)


def convert_mxnet_checkpoint(
    symbol_json: str | Path,
    params: str | Path,
    out_path: str | Path,
    layer: str | None = None,
    input_size: int = 224,
    color_order: str = SAGEMAKER_COLOR_ORDER,
    mean: Sequence[float] = SAGEMAKER_MEAN,
    std: Sequence[float] = SAGEMAKER_STD,
    pooling: str = "avg",
    name: str | None = None,
    venv: Path | None = None,
    progress: bool = True,
) -> Path:
    """Convert ``symbol_json`` + ``params`` (cut at ``layer`` if given) to ``out_path`` (.onnx) + sidecar.

    ``color_order``/``mean``/``std`` describe what the checkpoint was trained on (0..255 scale, in
    ``color_order``); the graph converts the contract's uint8 BGR input to that. ``pooling`` (avg|gem)
    applies when ``layer`` is a feature map ``[N, C, H, W]``; flat outputs are only L2-normalized.
    Stages: MXNet environment → MXNet to ONNX (worker) → contract front and L2 → parity → model + sidecar.
    Returns ``out_path``.
    """
    from tqdm import tqdm

    symbol_json, params, out_path = Path(symbol_json), Path(params), Path(out_path)
    _check_inputs(symbol_json, params, input_size, layer)
    front = Front(input_size, color_order, tuple(mean), tuple(std), pooling)
    front.check()
    backbone = f"mxnet-{name or checkpoint_name(symbol_json)}"
    started = time.monotonic()
    steps = tqdm(total=4, desc=f"convert {backbone}", unit="step", disable=not progress)
    steps.set_postfix_str("MXNet environment")
    python = ensure_mxnet_env(venv)
    steps.update()
    report, sidecar = _convert(python, symbol_json, params, out_path, layer, front, backbone, steps)
    steps.close()
    log_event(
        log,
        "mxnet_checkpoint_converted",
        symbol=str(symbol_json),
        layer=report["layer"],
        dim=sidecar.dim,
        out=str(out_path),
        seconds=round(time.monotonic() - started, 1),
        parity_cosine_min=sidecar.parity[0].cosine_min,
    )
    return out_path


def _convert(
    python: Path,
    symbol_json: Path,
    params: Path,
    out_path: Path,
    layer: str | None,
    front: Front,
    backbone: str,
    steps: Any,
) -> tuple[dict[str, Any], Sidecar]:
    """Every stage in a folder beside ``out_path``; the model and its sidecar land only when all succeeded."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mxnet-convert-", dir=out_path.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        photos, photos_source = parity_photos(front.input_size)
        np.save(tmp / "photos.npy", photos)
        steps.set_postfix_str("MXNet → ONNX")
        report = _mxnet_to_onnx(python, symbol_json, params, layer, front, tmp)
        steps.update()
        steps.set_postfix_str("contract front and L2")
        wrapped, dim, pooling = _wrap(symbol_json, report, front, tmp)
        steps.update()
        steps.set_postfix_str("parity vs MXNet")
        parity = _parity(wrapped, photos, photos_source, np.load(tmp / "reference.npy"), report)
        steps.update()
        model = tmp / "model.onnx"
        sidecar = _sidecar(backbone, symbol_json, params, report, front, wrapped, model, dim, pooling, parity)
        model.replace(out_path)
        write_sidecar(out_path, sidecar)
    return report, sidecar


@dataclass(frozen=True)
class Front:
    """What the checkpoint was trained on: the graph's front converts the contract's uint8 BGR input to it."""

    input_size: int
    color_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooling: str

    def check(self) -> None:
        if self.color_order not in ("RGB", "BGR"):
            raise MxnetConvertError(f"color_order must be RGB or BGR, got {self.color_order!r}")
        if self.pooling not in ("avg", "gem"):
            raise MxnetConvertError(f"pooling must be avg or gem, got {self.pooling!r}")


def _mxnet_to_onnx(
    python: Path, symbol_json: Path, params: Path, layer: str | None, front: Front, tmp: Path
) -> dict[str, Any]:
    """The worker (MXNet environment): ``tmp/raw.onnx``, MXNet's own outputs on the photos, and its report."""
    from model.export.graph import GEM_P

    args = ["--symbol", str(symbol_json), "--params", str(params), "--out", str(tmp / "raw.onnx")]
    args += ["--report", str(tmp / "report.json"), "--input-size", str(front.input_size)]
    args += ["--check-images", str(tmp / "photos.npy"), "--check-out", str(tmp / "reference.npy")]
    args += ["--color-order", front.color_order, "--mean", *map(str, front.mean), "--std", *map(str, front.std)]
    args += ["--pooling", front.pooling, "--gem-p", str(GEM_P)]
    if layer is not None:
        args += ["--layer", layer]
    _run_worker(python, args)
    report: dict[str, Any] = json.loads((tmp / "report.json").read_text())
    return report


def _wrap(symbol_json: Path, report: dict[str, Any], front: Front, tmp: Path) -> tuple[onnx.ModelProto, int, str]:
    """``tmp/model.onnx``: the raw graph behind the contract's uint8 BGR front, pooling and L2; (model, dim, pooling)."""
    # The shared wrap helper lives beside the torch exporter (imports torch): load it only when converting.
    from model.export.wrap import wrap_onnx_with_preprocessing

    shape = [int(d) for d in report["output_shape"]]
    dim = shape[1] if len(shape) in (2, 4) else 0
    if not dim:
        raise MxnetConvertError(
            f"layer '{report['layer']}' gives shape {shape}: need [N, D] or a feature map [N, C, H, W]"
            " (cut at a flatten or pooling output, e.g. flatten0_output)"
        )
    pooling = front.pooling if len(shape) == 4 else "none"
    try:
        # mx.onnx lists every weight as a graph input too: the wrap helper drops those.
        wrap_onnx_with_preprocessing(
            tmp / "raw.onnx",
            tmp / "model.onnx",
            front.input_size,
            front.color_order,
            list(front.mean),
            list(front.std),
            pooling=pooling,
        )
        return onnx.load(str(tmp / "model.onnx")), dim, pooling
    except (ValueError, onnx.checker.ValidationError) as exc:
        raise MxnetConvertError(f"cannot wrap the converted graph of {symbol_json}: {exc}") from exc


def _parity(
    wrapped: onnx.ModelProto, photos: np.ndarray, source: str, reference: np.ndarray, report: dict[str, Any]
) -> Parity:
    """Per-photo cosine between onnxruntime on the wrapped graph and MXNet; refuses below PARITY_MIN_COSINE."""
    got = _onnxruntime_embed(wrapped, photos)
    cosines = np.sum(got.astype(np.float64) * reference, axis=1)
    if got.shape != reference.shape or not np.all(np.isfinite(cosines)) or cosines.min() < PARITY_MIN_COSINE:
        raise MxnetConvertError(
            f"converted graph disagrees with MXNet on {len(photos)} photos (cosine min"
            f" {cosines.min() if cosines.size else math.nan:.5f} < {PARITY_MIN_COSINE}); nothing written"
        )
    return Parity.model_validate(
        {
            "reference": f"mxnet {report['mxnet_version']} fp32 ({report['layer']})",
            "images": len(photos),
            "cosine_min": float(cosines.min()),
            "cosine_mean": float(cosines.mean()),
            "photos": source,
        }
    )


def _sidecar(
    backbone: str,
    symbol_json: Path,
    params: Path,
    report: dict[str, Any],
    front: Front,
    wrapped: onnx.ModelProto,
    model_file: Path,
    dim: int,
    pooling: str,
    parity: Parity,
) -> Sidecar:
    sha = file_sha256(model_file)
    opset = next(int(o.version) for o in wrapped.opset_import if o.domain in ("", "ai.onnx"))
    return Sidecar(
        model_id=make_model_id(backbone, "fp32", sha),
        backbone=backbone,
        variant="fp32",
        dim=dim,
        input_size=front.input_size,
        opset=opset,
        normalization=Normalization.model_validate(
            {"color_order": front.color_order, "mean": list(front.mean), "std": list(front.std)}
        ),
        pooling=pooling,
        weights_source=str(params.resolve()),
        weights_license="user-supplied",
        sha256=sha,
        parity=[parity],
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={
            "converter": "model.mxnet (mx.onnx.export_model)",
            "symbol": str(symbol_json.resolve()),
            "layer": report["layer"],
            "mxnet_input": report["input_name"],
            "fix_gamma_set_to_one": report["fix_gamma_set_to_one"],
            "mxnet_version": report["mxnet_version"],
            "onnx_version_at_conversion": report["onnx_version"],
        },
    )
