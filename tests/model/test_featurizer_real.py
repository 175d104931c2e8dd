"""Featurizer on the real exported model: backends, single frames and batches, refusals with clear messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.featurizer import Featurizer, FeaturizerError
from model.runtime.base import BackendUnavailable
from model.sidecar import SidecarError, file_sha256, read_sidecar, write_sidecar


@pytest.fixture(scope="module")
def int8(exported_models: dict[str, Path]) -> Featurizer:
    return Featurizer(exported_models["int8"], backend="onnxruntime", threads=2)


def test_frames_and_batches_give_the_same_normalized_vectors(int8: Featurizer) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(3)]
    singles = np.stack([int8.featurize_frame(f) for f in frames])
    from model.prepare import prepare_batch

    batch = int8.featurize(prepare_batch(frames, int8.input_size))
    assert batch.shape == (3, 1280) and batch.dtype == np.float32
    np.testing.assert_allclose(singles, batch, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_each_backend_reports_itself_and_agrees(exported_models: dict[str, Path], backend: str) -> None:
    fz = Featurizer(exported_models["fp32"], backend=backend, device="cpu", threads=2)
    assert fz.backend_info.backend == backend
    assert "CPU" in fz.backend_info.device.upper()
    ref = Featurizer(exported_models["fp32"], backend="onnxruntime", threads=2)
    frame = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    # OpenVINO CPU may run an fp32 model in bf16 (it says so in backend_info.precision).
    floor = 0.995 if fz.backend_info.precision == "bf16" else 0.9999
    assert float(fz.featurize_frame(frame) @ ref.featurize_frame(frame)) > floor


def test_openvino_precision_can_be_forced_to_f32(exported_models: dict[str, Path]) -> None:
    from model.runtime.openvino_backend import OpenVinoBackend

    backend = OpenVinoBackend(str(exported_models["fp32"]), device="cpu", threads=2, precision="f32")
    assert backend.info.precision == "f32"
    ref = Featurizer(exported_models["fp32"], backend="onnxruntime", threads=2)
    frame = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    assert float(backend.run(frame)[0] @ ref.featurize(frame)[0]) > 0.9999


def test_wrong_inputs_are_refused(int8: Featurizer) -> None:
    with pytest.raises(FeaturizerError, match="dtype must be uint8"):
        int8.featurize(np.zeros((1, 224, 224, 3), dtype=np.float32))
    with pytest.raises(FeaturizerError, match=r"shape must be \[N, 224, 224, 3\]"):
        int8.featurize(np.zeros((1, 200, 200, 3), dtype=np.uint8))
    with pytest.raises(FeaturizerError, match="numpy array"):
        int8.featurize([[0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint8"):
        int8.featurize_frame(np.zeros((100, 100, 3), dtype=np.float64))


def test_corrupt_onnx_file_is_a_clear_error(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    sidecar = read_sidecar(exported_models["fp32"])
    write_sidecar(bad, sidecar.model_copy(update={"sha256": file_sha256(bad)}))
    with pytest.raises(BackendUnavailable, match="could not"):
        Featurizer(bad, backend="onnxruntime")


def test_model_and_sidecar_mismatch_is_refused(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(exported_models["fp32"], model)
    with pytest.raises(SidecarError, match="no sidecar"):
        Featurizer(model)
    # The int8 sidecar beside the fp32 file: the hash says they do not belong together.
    shutil.copy(str(exported_models["int8"])[:-5] + ".json", tmp_path / "m.json")
    with pytest.raises(SidecarError, match="does not match its sidecar"):
        Featurizer(model)
    # A sidecar that claims the wrong dimension: caught when the model runs.
    raw = json.loads(Path(str(exported_models["fp32"])[:-5] + ".json").read_text())
    raw["dim"] = 512
    (tmp_path / "m.json").write_text(json.dumps(raw))
    with pytest.raises(SidecarError, match="sidecar says dim 512"):
        Featurizer(model)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model export"):
        Featurizer(tmp_path / "absent.onnx")
