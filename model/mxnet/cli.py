"""Command-line glue for ``visual-search model export --mxnet PREFIX --epoch N --layer flatten0_output``.

``model/cli.py`` owns the ``export`` parser; it calls :func:`add_arguments` on it and, when ``args.mxnet`` is
set, returns :func:`run_export` (args) instead of exporting a torch backbone. Options it already has and that
are reused here: ``--out`` (folder) and ``--pooling``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.mxnet.convert import (
    SAGEMAKER_COLOR_ORDER,
    SAGEMAKER_MEAN,
    SAGEMAKER_STD,
    MxnetConvertError,
    checkpoint_files,
    checkpoint_name,
    convert_mxnet_checkpoint,
)
from model.mxnet.env import MxnetEnvError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "MXNet / SageMaker checkpoints",
        "convert PREFIX-symbol.json + PREFIX-NNNN.params (fp32) instead of a torch backbone; mxnet runs in its"
        " own environment (.venv-mxnet, created on first use)",
    )
    group.add_argument(
        "--mxnet", metavar="PREFIX", default=None, help="checkpoint prefix, e.g. model/image-classification"
    )
    group.add_argument("--epoch", type=int, default=0, help="checkpoint epoch (PREFIX-%%04d.params; default 0)")
    group.add_argument(
        "--layer", default=None, help="cut at this internal output, e.g. flatten0_output (default: the symbol's output)"
    )
    group.add_argument("--input-size", type=int, default=224, help="square input side in pixels (default 224)")
    group.add_argument(
        "--color-order", choices=["RGB", "BGR"], default=SAGEMAKER_COLOR_ORDER, help="channel order it was trained on"
    )
    group.add_argument(
        "--mean", type=float, nargs=3, default=list(SAGEMAKER_MEAN), help="per-channel mean, 0..255, in color order"
    )
    group.add_argument(
        "--std", type=float, nargs=3, default=list(SAGEMAKER_STD), help="per-channel divisor, 0..255, in color order"
    )


def run_export(args: argparse.Namespace) -> int:
    """Convert ``args.mxnet``; print the model path and sidecar summary. 2 on a bad checkpoint, not a traceback."""
    try:
        symbol, params = checkpoint_files(args.mxnet, args.epoch)
        name = checkpoint_name(symbol)
        out = Path(args.out) / f"mxnet-{name}-fp32.onnx"
        path = convert_mxnet_checkpoint(
            symbol,
            params,
            out,
            layer=args.layer,
            input_size=args.input_size,
            color_order=args.color_order,
            mean=args.mean,
            std=args.std,
            pooling=getattr(args, "pooling", "avg") or "avg",
            name=name,
        )
    except (FileNotFoundError, MxnetConvertError, MxnetEnvError) as exc:
        print(f"error: {exc}")
        return 2
    sidecar = json.loads(path.with_suffix(".json").read_text())
    parity = sidecar["parity"][0]
    print(
        f"{path}: {sidecar['model_id']}, {sidecar['dim']}-d, layer {sidecar['extra']['layer']},"
        f" cosine vs MXNet min {parity['cosine_min']:.6f} on {parity['images']} photos"
    )
    return 0
