"""Runs INSIDE the MXNet environment (``.venv-mxnet``): MXNet checkpoint → plain ONNX (float NCHW in).

Imports nothing from the project: that environment has mxnet 1.9.1, numpy 1.23.5 and onnx 1.15.0 only.
The main environment (:mod:`model.mxnet.convert`) adds the contract's uint8 BGR front, pooling and L2.

    python convert_worker.py --symbol P-symbol.json --params P-0000.params --out raw.onnx --report r.json
        [--layer flatten0_output] [--input-size 224]
        [--check-images x.npy --check-out y.npy --color-order RGB --mean 123.68 116.78 103.94 --std 1 1 1]

``--check-images`` runs MXNet itself on uint8 BGR NHWC images (preprocessed here, in numpy) and writes
pooled (``--pooling avg|gem``), L2-normalized features: the reference for the parity figures in the sidecar. Errors are one
line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

LOSS_LABEL_SUFFIX = "_label"


class WorkerError(Exception):
    pass


def _load(symbol_path: str, params_path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    import mxnet as mx

    try:
        sym = mx.sym.load(symbol_path)
    except Exception as exc:
        raise WorkerError(f"symbol file {symbol_path} is not an MXNet symbol JSON: {exc}") from exc
    try:
        raw = mx.nd.load(params_path)
    except Exception as exc:
        raise WorkerError(f"params file {params_path} is not an MXNet .params file: {exc}") from exc
    if not isinstance(raw, dict):
        raise WorkerError(f"params file {params_path} holds an unnamed list, not named parameters")
    args: dict[str, Any] = {}
    aux: dict[str, Any] = {}
    # Module checkpoints and Gluon export() prefix names with arg:/aux:; save_parameters() does not.
    for key, value in raw.items():
        if key.startswith("aux:"):
            aux[key[4:]] = value
        elif key.startswith("arg:"):
            args[key[4:]] = value
        else:
            args[key] = value
    return sym, args, aux


def _cut(sym: Any, layer: str | None) -> tuple[Any, str]:
    if layer is None:
        return sym, sym.list_outputs()[0]
    internals = sym.get_internals()
    names = internals.list_outputs()
    for candidate in (layer, f"{layer}_output"):
        if candidate in names:
            return internals[candidate], candidate
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    pooled = [n for n in names if any(t in n for t in ("flatten", "pool", "fc")) and n.endswith("_output")][-5:]
    hint = ", ".join(close or pooled or names[-5:])
    raise WorkerError(f"layer '{layer}' is not an output of the symbol; candidates: {hint}")


def _data_inputs(sym: Any, args: dict[str, Any], aux: dict[str, Any]) -> list[str]:
    known = set(args) | set(aux)
    return [n for n in sym.list_arguments() if n not in known]


def _select(sym: Any, args: dict[str, Any], aux: dict[str, Any], layer: str | None) -> tuple[Any, str, str]:
    out, out_name = _cut(sym, layer)
    inputs = _data_inputs(out, args, aux)
    labels = [n for n in inputs if n.endswith(LOSS_LABEL_SUFFIX)]
    if labels:
        raise WorkerError(
            f"the graph up to '{out_name}' needs the training label input {labels[0]} (it ends in a loss layer);"
            " cut it with --layer at a feature layer, e.g. flatten0_output"
        )
    if len(inputs) != 1:
        missing = ", ".join(inputs[:5])
        raise WorkerError(
            f"the graph up to '{out_name}' has {len(inputs)} inputs without parameters ({missing});"
            " expected one image input: does the .params file belong to this symbol?"
        )
    return out, out_name, inputs[0]


def fix_gamma_params(sym: Any, args: dict[str, Any]) -> list[str]:
    """Set gamma to 1 for BatchNorms with ``fix_gamma`` (MXNet's default): MXNet ignores the stored gamma there,
    mx.onnx does not — without this a ``bn_data`` layer with a stored gamma ≠ 1 silently changes the features."""
    import mxnet as mx

    nodes = json.loads(sym.tojson())["nodes"]
    fixed = []
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        flag = str((node.get("attrs") or {}).get("fix_gamma", "True")).lower()
        if flag not in ("true", "1"):
            continue
        gamma = nodes[node["inputs"][1][0]]["name"]
        if gamma in args:
            args[gamma] = mx.nd.ones_like(args[gamma])
            fixed.append(gamma)
    return fixed


def export_onnx(sym: Any, args: dict[str, Any], aux: dict[str, Any], data: str, size: int, out: Path) -> None:
    import mxnet as mx
    import numpy as np

    needed = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    params = {k: v for k, v in {**args, **aux}.items() if k in needed}
    try:
        mx.onnx.export_model(
            sym,
            params,
            in_shapes=[(1, 3, size, size)],
            in_types=[np.float32],
            onnx_file_path=str(out),
            dynamic=True,
            dynamic_input_shapes=[(None, 3, size, size)],
        )
    except Exception as exc:
        raise WorkerError(f"mx.onnx.export_model failed: {type(exc).__name__}: {exc}") from exc


def reference_features(
    sym: Any,
    args: dict[str, Any],
    aux: dict[str, Any],
    data: str,
    images: Any,
    color_order: str,
    mean: list[float],
    std: list[float],
    pooling: str = "avg",
    gem_p: float = 3.0,
) -> Any:
    """MXNet's own features for uint8 BGR NHWC images, preprocessed in numpy, pooled and L2-normalized."""
    import mxnet as mx
    import numpy as np

    x = images.astype(np.float32)
    if color_order == "RGB":
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    bound_args = {k: v for k, v in args.items() if k in set(sym.list_arguments())}
    bound_aux = {k: v for k, v in aux.items() if k in set(sym.list_auxiliary_states())}
    bound_args[data] = mx.nd.array(x)
    exe = sym.bind(mx.cpu(), args=bound_args, aux_states=bound_aux, grad_req="null")
    feats = exe.forward(is_train=False)[0].asnumpy().astype(np.float64)
    if feats.ndim == 4 and pooling == "gem":
        feats = (np.clip(feats, 1e-6, None) ** gem_p).mean(axis=(2, 3)) ** (1.0 / gem_p)
    elif feats.ndim == 4:
        feats = feats.mean(axis=(2, 3))
    feats = feats.reshape(feats.shape[0], -1)
    norms = np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return (feats / norms).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--check-images", type=Path, default=None)
    parser.add_argument("--check-out", type=Path, default=None)
    parser.add_argument("--color-order", choices=("RGB", "BGR"), default="RGB")
    parser.add_argument("--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0])
    parser.add_argument("--std", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    parser.add_argument("--pooling", choices=("avg", "gem"), default="avg")
    parser.add_argument("--gem-p", type=float, default=3.0)
    opts = parser.parse_args(argv)
    try:
        import mxnet as mx
        import numpy as np
        import onnx

        sym, args, aux = _load(opts.symbol, opts.params)
        out_sym, out_name, data = _select(sym, args, aux, opts.layer)
        size = opts.input_size
        try:
            _, out_shapes, _ = out_sym.infer_shape(**{data: (1, 3, size, size)})
        except Exception as exc:
            raise WorkerError(f"the graph does not accept {size}x{size} input at '{data}': {exc}") from exc
        missing = sorted(
            (set(out_sym.list_arguments()) - set(args) - {data}) | (set(out_sym.list_auxiliary_states()) - set(aux))
        )
        if missing:
            raise WorkerError(f"params file {opts.params} lacks {len(missing)} parameters, e.g. {missing[:3]}")
        fixed_gammas = fix_gamma_params(out_sym, args)
        export_onnx(out_sym, args, aux, data, size, opts.out)
        report = {
            "input_name": data,
            "layer": out_name,
            "fix_gamma_set_to_one": fixed_gammas,
            "output_shape": list(out_shapes[0]),
            "mxnet_version": mx.__version__,
            "onnx_version": onnx.__version__,
            "numpy_version": np.__version__,
        }
        if opts.check_images is not None and opts.check_out is not None:
            images = np.load(opts.check_images)
            feats = reference_features(
                out_sym, args, aux, data, images, opts.color_order, opts.mean, opts.std, opts.pooling, opts.gem_p
            )
            np.save(opts.check_out, feats)
        opts.report.write_text(json.dumps(report, indent=2) + "\n")
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
