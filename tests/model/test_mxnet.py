"""MXNet converter: a small Gluon network built and saved in the MXNet environment, converted, checked for parity.

The main environment never imports mxnet: the network and its reference outputs are made by a script run
with the MXNet environment's interpreter (created on first use, ~100 MB download, hence ``slow``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from model.featurizer import Featurizer
from model.mxnet import MxnetConvertError, checkpoint_files, convert_mxnet_checkpoint, ensure_mxnet_env
from model.mxnet import cli as mxnet_cli
from model.mxnet.env import ensure_venv
from model.sidecar import read_sidecar

SIZE = 32
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# Runs inside the MXNet environment. Names are chosen so the internals include the SageMaker-style
# "flatten0_output" and a feature map "stage1_relu_output". The reference preprocessing is written here
# again, independently of convert_worker.py: BGR uint8 → RGB → (x - mean) / std → NCHW.
BUILD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mxnet as mx
    import numpy as np
    from mxnet import gluon, nd
    from mxnet.gluon import nn

    prefix, images_path, refs_path, mean, std = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    mean = np.array(json.loads(mean), np.float32)
    std = np.array(json.loads(std), np.float32)
    mx.random.seed(7)
    np.random.seed(7)

    class Net(gluon.HybridBlock):
        def __init__(self):
            super().__init__(prefix="")
            with self.name_scope():
                self.conv0 = nn.Conv2D(8, 3, padding=1)
                self.bn0 = nn.BatchNorm()
                self.conv1 = nn.Conv2D(16, 3, strides=2, padding=1)
                self.bn1 = nn.BatchNorm()
                self.pool = nn.MaxPool2D(2)
                self.dense = nn.Dense(10)

        def hybrid_forward(self, F, x):
            x = F.Activation(self.bn0(self.conv0(x)), act_type="relu", name="stage0_relu")
            x = F.Activation(self.bn1(self.conv1(self.pool(x))), act_type="relu", name="stage1_relu")
            x = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg", name="pool0")
            x = F.flatten(x, name="flatten0")
            return self.dense(x)

    net = Net()
    net.initialize(mx.init.Xavier())
    net(nd.zeros((1, 3, 32, 32)))
    # Non-trivial BatchNorm statistics, so a converter that drops or misorders them fails parity.
    for name, param in net.collect_params().items():
        shape = param.shape
        if name.endswith("running_var"):
            param.set_data(nd.array(np.random.uniform(0.5, 1.5, shape)))
        elif name.endswith(("running_mean", "beta")):
            param.set_data(nd.array(np.random.normal(0.0, 0.3, shape)))
        elif name.endswith("gamma"):
            param.set_data(nd.array(np.random.uniform(0.5, 1.5, shape)))
    net.hybridize()
    images = np.load(images_path)
    x = (images[..., ::-1].astype(np.float32) - mean) / std
    x = nd.array(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    net(x)
    net.export(prefix, epoch=0)

    sym, args, aux = mx.model.load_checkpoint(prefix, 0)
    internals = sym.get_internals()
    refs = {}
    for layer in ("dense0_fwd_output", "flatten0_output", "stage1_relu_output"):
        out = internals[layer]
        exe = out.bind(mx.cpu(), args={**{k: v for k, v in args.items() if k in out.list_arguments()}, "data": x},
                       aux_states={k: v for k, v in aux.items() if k in out.list_auxiliary_states()}, grad_req="null")
        y = exe.forward(is_train=False)[0].asnumpy().astype(np.float64)
        pooled = {"": y}
        if y.ndim == 4:
            pooled = {"": y.mean(axis=(2, 3)), "_gem": (np.clip(y, 1e-6, None) ** 3).mean(axis=(2, 3)) ** (1 / 3)}
        for suffix, v in pooled.items():
            refs[layer + suffix] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    # The SageMaker image-classification layout: symbol API, raw 0..255 RGB into a "bn_data" BatchNorm
    # (fix_gamma: MXNet ignores its stored gamma, random here, and the converter must too),
    # ending in SoftmaxOutput (so a "softmax_label" input), saved as a Module checkpoint (arg:/aux: params).
    data = mx.sym.var("data")
    body = mx.sym.BatchNorm(data, fix_gamma=True, eps=2e-5, name="bn_data")
    body = mx.sym.Convolution(body, num_filter=12, kernel=(3, 3), stride=(2, 2), pad=(1, 1), no_bias=True, name="conv0")
    body = mx.sym.Activation(mx.sym.BatchNorm(body, fix_gamma=False, eps=2e-5, name="bn0"), act_type="relu", name="relu0")
    body = mx.sym.Pooling(body, kernel=(7, 7), global_pool=True, pool_type="avg", name="pool1")
    flat = mx.sym.Flatten(body, name="flatten0")
    net_sym = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(flat, num_hidden=5, name="fc1"), name="softmax")
    arg_shapes, _, aux_shapes = net_sym.infer_shape(data=(1, 3, 32, 32), softmax_label=(1,))
    sm_args = {n: nd.array(np.random.normal(0, 0.2, s)) for n, s in zip(net_sym.list_arguments(), arg_shapes)
               if n not in ("data", "softmax_label")}
    sm_aux = {n: nd.array(np.random.uniform(0.5, 1.5, s) if n.endswith("var") else np.random.normal(0, 20, s))
              for n, s in zip(net_sym.list_auxiliary_states(), aux_shapes)}
    mx.model.save_checkpoint(prefix + "-sagemaker", 3, net_sym, sm_args, sm_aux)
    raw_rgb = nd.array(np.ascontiguousarray(images[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2)))
    exe = flat.bind(mx.cpu(), args={**{k: v for k, v in sm_args.items() if k in flat.list_arguments()}, "data": raw_rgb},
                    aux_states=sm_aux, grad_req="null")
    y = exe.forward(is_train=False)[0].asnumpy().astype(np.float64)
    refs["sagemaker_flatten0_output"] = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
    np.savez(refs_path, **refs)
    print(json.dumps({"outputs": internals.list_outputs()}))
    """
)


def _photos(size: int) -> np.ndarray:
    from skimage import data

    from model.prepare import prepare_frame

    frames = [np.ascontiguousarray(img[..., ::-1]) for img in (data.chelsea(), data.astronaut(), data.coffee())]
    return np.stack([prepare_frame(frame, size) for frame in frames])


# --- fast: input checks and graph surgery (no MXNet environment) ------------------------------------


def test_missing_checkpoint_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model-symbol\.json does not exist"):
        checkpoint_files(tmp_path / "model", 0)
    (tmp_path / "model-symbol.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model-0003\.params does not exist \(prefix .*, epoch 3\)"):
        checkpoint_files(tmp_path / "model", 3)
    with pytest.raises(FileNotFoundError, match=r"params file .*nowhere\.params does not exist"):
        convert_mxnet_checkpoint(tmp_path / "model-symbol.json", tmp_path / "nowhere.params", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_bad_symbol_file_is_refused_before_any_work(tmp_path: Path) -> None:
    symbol, params = tmp_path / "m-symbol.json", tmp_path / "m-0000.params"
    params.write_bytes(b"\x00" * 16)
    symbol.write_text("not json")
    with pytest.raises(MxnetConvertError, match=r"m-symbol\.json is not JSON"):
        convert_mxnet_checkpoint(symbol, params, tmp_path / "o.onnx", venv=tmp_path / "never-created")
    symbol.write_text(json.dumps({"weights": []}))
    with pytest.raises(MxnetConvertError, match=r"has no 'nodes'"):
        convert_mxnet_checkpoint(symbol, params, tmp_path / "o.onnx", venv=tmp_path / "never-created")
    assert not (tmp_path / "never-created").exists() and not (tmp_path / "o.onnx").exists()


def test_env_creation_is_idempotent_and_concurrent_safe(tmp_path: Path) -> None:
    """Two processes asking at once: one builds under the lock, the other waits and reuses it."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install: this checks the lock and the stamp, not pip\n")
    venv = tmp_path / "venv-test"
    script = (
        "import sys, logging; logging.basicConfig(level=logging.INFO, format='%(message)s');"
        "from pathlib import Path; from model.mxnet.env import ensure_venv;"
        f"print(ensure_venv(Path({str(venv)!r}), Path({str(requirements)!r}), ('json',)))"
    )
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), results
    assert {out.strip() for out, _ in results} == {str(venv.resolve() / "bin" / "python")}
    logs = "".join(err for _, err in results)
    assert logs.splitlines().count("mxnet_env_creating") == 1, logs  # one built it; the other waited or reused
    stamp = (venv / ".visual-search-mxnet.json").read_text()
    # A third call finds the stamp and returns without rebuilding.
    assert ensure_venv(venv, requirements, ("json",)) == venv.resolve() / "bin" / "python"
    assert (venv / ".visual-search-mxnet.json").read_text() == stamp
    # Changed requirements → rebuilt.
    requirements.write_text("# changed\n")
    ensure_venv(venv, requirements, ("json",))
    assert (venv / ".visual-search-mxnet.json").read_text() != stamp


# --- slow: the real MXNet environment ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gluon_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    python = ensure_mxnet_env()
    work = tmp_path_factory.mktemp("gluon")
    images = _photos(SIZE)
    np.save(work / "images.npy", images)
    (work / "build.py").write_text(BUILD_SCRIPT)
    prefix = work / "tiny-gluon"
    refs_args = [json.dumps(MEAN), json.dumps(STD)]
    result = subprocess.run(
        [
            str(python),
            "-I",
            str(work / "build.py"),
            str(prefix),
            str(work / "images.npy"),
            str(work / "refs.npz"),
            *refs_args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])["outputs"]
    assert "flatten0_output" in outputs and "stage1_relu_output" in outputs
    refs = dict(np.load(work / "refs.npz"))
    return prefix, refs, images


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layer", "pooling", "ref_key", "dim"),
    [
        (None, "none", "dense0_fwd_output", 10),
        ("flatten0_output", "none", "flatten0_output", 16),
        ("stage1_relu", "avg", "stage1_relu_output", 16),
        ("stage1_relu_output", "gem", "stage1_relu_output_gem", 16),
    ],
)
def test_gluon_checkpoint_converts_with_parity(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray], layer, pooling, ref_key, dim
) -> None:
    prefix, refs, images = gluon_checkpoint
    symbol, params = checkpoint_files(prefix, 0)
    out = convert_mxnet_checkpoint(
        symbol,
        params,
        tmp_path / "m.onnx",
        layer=layer,
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        pooling="gem" if pooling == "gem" else "avg",
        progress=False,
    )
    sidecar = read_sidecar(out)
    assert sidecar.backbone == "mxnet-tiny-gluon" and sidecar.model_id.startswith("mxnet-tiny-gluon-fp32-")
    assert (sidecar.dim, sidecar.input_size, sidecar.pooling) == (dim, SIZE, pooling)
    assert sidecar.weights_source == str(params.resolve()) and sidecar.weights_license == "user-supplied"
    assert sidecar.normalization.color_order == "RGB" and sidecar.normalization.mean == list(MEAN)
    assert sidecar.extra["layer"] == ref_key.removesuffix("_gem")
    assert sidecar.extra["fix_gamma_set_to_one"] == []  # Gluon's BatchNorm learns its gamma
    assert sidecar.parity and sidecar.parity[0].cosine_min >= 0.9999

    got = Featurizer(out, backend="onnxruntime").featurize(images)
    cosine = np.sum(got.astype(np.float64) * refs[ref_key], axis=1)
    assert got.shape == (len(images), dim)
    assert cosine.min() >= 0.9999, cosine
    # The photos must differ after conversion, or parity above would prove nothing.
    assert float(got[0] @ got[1]) < 0.9999


@pytest.mark.slow
def test_unknown_layer_lists_candidates_and_writes_nothing(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray]
) -> None:
    prefix, _, _ = gluon_checkpoint
    symbol, params = checkpoint_files(prefix, 0)
    with pytest.raises(MxnetConvertError, match=r"layer 'flaten0_output' is not an output.*flatten0_output"):
        convert_mxnet_checkpoint(symbol, params, tmp_path / "m.onnx", layer="flaten0_output", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_params_of_another_network_are_refused(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray]
) -> None:
    prefix, _, _ = gluon_checkpoint
    symbol, _ = checkpoint_files(prefix, 0)
    python = ensure_mxnet_env()
    other = tmp_path / "other.params"
    script = (
        "import sys, mxnet as mx; mx.nd.save(sys.argv[1], {'arg:conv0_weight': mx.nd.zeros((8, 3, 3, 3)),"
        " 'arg:unrelated_weight': mx.nd.zeros((2,))})"
    )
    subprocess.run([str(python), "-I", "-c", script, str(other)], check=True, timeout=300)
    out_dir = tmp_path / "out"
    with pytest.raises(MxnetConvertError, match=r"does the \.params file belong to this symbol"):
        convert_mxnet_checkpoint(symbol, other, out_dir / "m.onnx", layer="flatten0_output", input_size=SIZE)
    assert not (out_dir / "m.onnx").exists() and not (out_dir / "m.json").exists()


def _export_parser() -> argparse.ArgumentParser:
    # The options model/cli.py's export parser already has, plus ours, as `visual-search model export` builds it.
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--pooling", choices=["avg", "gem"], default="avg")
    mxnet_cli.add_arguments(parser)
    return parser


def test_cli_missing_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _export_parser().parse_args(["--out", str(tmp_path), "--mxnet", str(tmp_path / "sm"), "--epoch", "12"])
    assert mxnet_cli.run_export(args) == 2
    assert f"error: MXNet checkpoint file {tmp_path / 'sm'}-symbol.json does not exist" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_exports_sagemaker_style_cut(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    prefix, refs, images = gluon_checkpoint
    argv = ["--out", str(tmp_path), "--mxnet", str(prefix), "--epoch", "0", "--layer", "flatten0_output"]
    argv += ["--input-size", str(SIZE), "--mean", *map(str, MEAN), "--std", *map(str, STD)]
    assert mxnet_cli.run_export(_export_parser().parse_args(argv)) == 0
    out = tmp_path / "mxnet-tiny-gluon-fp32.onnx"
    assert str(out) in capsys.readouterr().out
    got = Featurizer(out, backend="onnxruntime").featurize(images)
    assert np.sum(got * refs["flatten0_output"], axis=1).min() >= 0.9999


@pytest.mark.slow
def test_sagemaker_checkpoint_needs_a_cut_and_converts_at_flatten0(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray]
) -> None:
    """SageMaker's layout: raw RGB 0..255 (the defaults), a softmax_label input, Module arg:/aux: params."""
    prefix, refs, images = gluon_checkpoint
    symbol, params = checkpoint_files(f"{prefix}-sagemaker", 3)
    with pytest.raises(MxnetConvertError, match=r"softmax_label.*--layer.*flatten0_output"):
        convert_mxnet_checkpoint(symbol, params, tmp_path / "full.onnx", input_size=SIZE, progress=False)
    assert not (tmp_path / "full.onnx").exists()
    out = convert_mxnet_checkpoint(
        symbol, params, tmp_path / "sm.onnx", layer="flatten0_output", input_size=SIZE, progress=False
    )
    sidecar = read_sidecar(out)
    assert sidecar.backbone == "mxnet-tiny-gluon-sagemaker" and sidecar.dim == 12
    assert sidecar.extra["fix_gamma_set_to_one"] == ["bn_data_gamma"]
    assert (sidecar.normalization.color_order, sidecar.normalization.mean) == ("RGB", [0.0, 0.0, 0.0])
    got = Featurizer(out, backend="onnxruntime").featurize(images)
    cosine = np.sum(got.astype(np.float64) * refs["sagemaker_flatten0_output"], axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert float(got[0] @ got[1]) < 0.9999
