"""MXNet converter: a small Gluon network built and saved in the MXNet environment, converted, checked for parity.

The main environment never imports mxnet: the network and its reference outputs are made by a script run
with the MXNet environment's interpreter (created on first use, ~100 MB download, hence ``slow``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from model.contract import INPUT_NAME, OUTPUT_NAME
from model.featurizer import Featurizer
from model.mxnet import MxnetConvertError, checkpoint_files, convert_mxnet_checkpoint, ensure_mxnet_env
from model.mxnet.env import ensure_venv
from model.mxnet.wrap import WrapError, wrap_with_contract
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
        if y.ndim == 4:
            y = y.mean(axis=(2, 3))
        refs[layer] = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
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


def _tiny_backbone(opset: int, feature_map: bool) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """A float NCHW conv (+ optional flatten) graph in the style of mx.onnx (initializers listed as inputs)."""
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    nodes = [helper.make_node("Conv", ["data", "w", "b"], ["conv"], pads=[1, 1, 1, 1])]
    nodes.append(helper.make_node("Relu", ["conv"], ["relu"]))
    out = "relu"
    if not feature_map:
        nodes.append(helper.make_node("Flatten", ["relu"], ["embedding"]))  # collides with the contract name
        out = "embedding"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [6, 3, 3, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [6]),
        ],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what mx.onnx writes is older than this onnx's default, which onnxruntime may not read yet
    return model, weight, bias


def _numpy_conv_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, _, h, w = x.shape
    out = np.zeros((n, weight.shape[0], h, w), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, dy : dy + h, dx : dx + w], weight[:, :, dy, dx])
    return np.maximum(out + bias[None, :, None, None], 0.0)


@pytest.mark.parametrize(("opset", "feature_map"), [(13, True), (20, True), (17, False)])
def test_wrap_adds_contract_front_pooling_and_l2(opset: int, feature_map: bool) -> None:
    import onnxruntime as ort

    inner, weight, bias = _tiny_backbone(opset, feature_map)
    dim = 6 if feature_map else 6 * 8 * 8
    wrapped = wrap_with_contract(inner, 8, "RGB", MEAN, STD, output_rank=4 if feature_map else 2, output_dim=dim)
    assert [i.name for i in wrapped.graph.input] == [INPUT_NAME]
    assert [o.name for o in wrapped.graph.output] == [OUTPUT_NAME]
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    session = ort.InferenceSession(wrapped.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: images})[0]

    x = ((images[..., ::-1].astype(np.float64) - MEAN) / STD).transpose(0, 3, 1, 2)
    feats = _numpy_conv_relu(x, weight.astype(np.float64), bias.astype(np.float64))
    feats = feats.mean(axis=(2, 3)) if feature_map else feats.reshape(2, -1)
    expected = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    assert got.shape == (2, dim)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_wrap_keeps_zero_vectors_finite_and_refuses_bad_graphs() -> None:
    import onnxruntime as ort

    inner, _, _ = _tiny_backbone(17, True)
    for init in inner.graph.initializer:
        if init.name == "b":
            init.CopyFrom(numpy_helper.from_array(np.full(6, -1e6, np.float32), "b"))  # every ReLU off
    wrapped = wrap_with_contract(inner, 8, "BGR", (0, 0, 0), (1, 1, 1), output_rank=4)
    session = ort.InferenceSession(wrapped.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {INPUT_NAME: np.zeros((1, 8, 8, 3), np.uint8)})[0]
    assert np.all(np.isfinite(out)) and np.all(out == 0)

    with pytest.raises(WrapError, match="rank 3"):
        wrap_with_contract(inner, 8, "RGB", MEAN, STD, output_rank=3)
    with pytest.raises(WrapError, match="std non-zero"):
        wrap_with_contract(inner, 8, "RGB", MEAN, (1, 0, 1), output_rank=4)
    two_inputs, _, _ = _tiny_backbone(17, True)
    two_inputs.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1]))
    with pytest.raises(WrapError, match=r"one image input.*'data', 'mask'"):
        wrap_with_contract(two_inputs, 8, "RGB", MEAN, STD, output_rank=4)


@pytest.mark.slow
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
    assert logs.count("creating the virtual environment") == 1, logs
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
    ("layer", "ref_key", "dim", "pooling"),
    [
        (None, "dense0_fwd_output", 10, "none"),
        ("flatten0_output", "flatten0_output", 16, "none"),
        ("stage1_relu", "stage1_relu_output", 16, "avg"),
    ],
)
def test_gluon_checkpoint_converts_with_parity(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray], layer, ref_key, dim, pooling
) -> None:
    prefix, refs, images = gluon_checkpoint
    symbol, params = checkpoint_files(prefix, 0)
    out = convert_mxnet_checkpoint(
        symbol, params, tmp_path / "m.onnx", layer=layer, input_size=SIZE, mean=MEAN, std=STD, progress=False
    )
    sidecar = read_sidecar(out)
    assert sidecar.backbone == "mxnet-tiny-gluon" and sidecar.model_id.startswith("mxnet-tiny-gluon-fp32-")
    assert (sidecar.dim, sidecar.input_size, sidecar.pooling) == (dim, SIZE, pooling)
    assert sidecar.weights_source == str(params.resolve()) and sidecar.weights_license == "user-supplied"
    assert sidecar.normalization.color_order == "RGB" and sidecar.normalization.mean == list(MEAN)
    assert sidecar.extra["layer"] == ref_key
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


@pytest.mark.slow
def test_concurrent_conversions_share_one_environment(
    tmp_path: Path, gluon_checkpoint: tuple[Path, dict[str, np.ndarray], np.ndarray]
) -> None:
    prefix, _, _ = gluon_checkpoint
    symbol, params = checkpoint_files(prefix, 0)
    errors: list[BaseException] = []

    def convert(index: int) -> None:
        try:
            convert_mxnet_checkpoint(symbol, params, tmp_path / f"m{index}.onnx", input_size=SIZE, progress=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert read_sidecar(tmp_path / "m0.onnx").model_id == read_sidecar(tmp_path / "m1.onnx").model_id
