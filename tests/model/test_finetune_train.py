"""Fine-tuning end to end on a tiny set: train one short epoch, get killed, resume, export, compare.

Uses the real EfficientNet-Lite0 (packaged weights) at a 64 px training resolution and 12 training images,
so the whole module stays around half a minute on two cores. The exported model keeps the backbone's
224 px input.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.featurizer import Featurizer
from model.finetune import checkpoint
from model.finetune.cli import main as finetune_main
from model.finetune.compare import retrieval_scores
from model.finetune.config import FinetuneConfig
from model.finetune.pipeline import Inputs, run_finetune
from model.finetune.trainer import Trainer
from model.sidecar import read_sidecar
from tests.model.test_finetune_data import make_class_folder

pytestmark = pytest.mark.slow


def _config(**overrides: object) -> FinetuneConfig:
    values: dict[str, object] = {
        "epochs": 2,
        "head_epochs": 1,
        "unfreeze_blocks": 2,
        "batch_size": 4,
        "input_size": 64,
        "metric_loss_weight": 0.5,
        "export_variants": ["fp32"],
        "patience": 5,
    }
    values.update(overrides)
    return FinetuneConfig.model_validate(values)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_class_folder(tmp_path_factory.mktemp("finetune") / "catalog", per_class=6)
    # One corrupt file among the good ones: reported and skipped, never fatal.
    (root / "square" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    return root


def test_killed_run_resumes_from_checkpoint_and_exports(
    tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    inputs = Inputs(train=tiny_set, holdout=tiny_set)

    # Reference: the same two epochs without interruption (training only).
    reference = run_finetune(_config(), inputs, tmp_path / "reference", export=False, progress=False)

    # "Kill" the run right after epoch 1's checkpoint is on disk.
    original = Trainer.write_metrics

    def killed(self: Trainer, state: dict[str, object], extra: dict[str, object] | None = None) -> Path:
        original(self, state, extra)  # type: ignore[arg-type]
        raise KeyboardInterrupt("killed after the first epoch")

    monkeypatch.setattr(Trainer, "write_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(_config(), inputs, out, progress=False)
    monkeypatch.setattr(Trainer, "write_metrics", original)
    last = checkpoint.load(out / "checkpoints" / "last.pt")
    assert last["state"]["epoch"] == 1
    assert (out / "checkpoints" / "best.pt").exists()
    assert (out / "training.png").exists()

    summary = run_finetune(_config(), inputs, out, progress=False)
    assert summary["resumed_from_epoch"] == 1
    assert summary["epochs_run"] == 2
    assert any("corrupt.jpg" in line for line in summary["skipped"])

    # Continued from the checkpoint: the resumed epoch 2 is the uninterrupted run's epoch 2.
    metrics = json.loads((out / "metrics.json").read_text())
    ref_metrics = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert [h["phase"] for h in metrics["history"]] == ["head", "last 2 blocks"]
    for mine, ref in zip(metrics["history"], ref_metrics["history"], strict=True):
        assert mine["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4)
        assert mine["val_acc"] == pytest.approx(ref["val_acc"])
    assert reference["best_val_acc"] == pytest.approx(summary["best_val_acc"])

    # Outputs: best checkpoint, plot, metrics, the exported featurizer with provenance, the comparison.
    plot = cv2.imread(str(out / "training.png"))
    assert plot is not None and plot.shape[0] > 100
    onnx_path = Path(summary["exported"]["fp32"])
    sidecar = read_sidecar(onnx_path)
    provenance = sidecar.extra["finetune"]
    assert provenance["base_model"].startswith("efficientnet-lite0")
    assert provenance["training_data_hash"] == metrics["data_hash"]
    assert provenance["classes"] == ["circle", "square", "triangle"]
    assert sidecar.input_size == 224
    featurizer = Featurizer(onnx_path, backend="onnxruntime", warmup=0)
    frame = cv2.imread(str(tiny_set / "circle" / "00.jpg"))
    assert frame is not None
    vector = featurizer.featurize_frame(frame)
    assert vector.shape == (1280,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    base_id = summary["comparison"]["models"]["base"]["model_id"]
    assert base_id != featurizer.model_id  # fine-tuned weights, a different model id
    assert set(metrics["comparison"]["models"]) == {"base", "finetuned"}
    assert 0.0 <= metrics["comparison"]["models"]["finetuned"]["map"] <= 1.0

    # The standalone before/after comparison gives the same figures as the run's own.
    figures = tmp_path / "compare.json"
    base_path = summary["comparison"]["models"]["base"]["model"]
    args = ["eval", "--base", base_path, "--finetuned", str(onnx_path), "--holdout", str(tiny_set)]
    assert finetune_main([*args, "--compare-json", str(figures), "--no-progress"]) == 0
    again = json.loads(figures.read_text())
    assert again["models"]["finetuned"]["map"] == pytest.approx(metrics["comparison"]["models"]["finetuned"]["map"])

    # A resumed run with other settings is refused, naming what changed.
    with pytest.raises(checkpoint.CheckpointError, match="settings lr"):
        run_finetune(_config(lr=0.01), inputs, out, export=False, progress=False)


def test_cli_reports_bad_settings_and_bad_inputs(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert finetune_main(["train", str(tiny_set), "--out", str(tmp_path / "a"), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert (
        finetune_main(["train", str(tiny_set), "--out", str(tmp_path / "b"), "--epochs", "1", "--head-epochs", "2"])
        == 2
    )
    assert "head_epochs" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    assert finetune_main(["train", str(empty), "--out", str(tmp_path / "c")]) == 2
    assert "hold no images" in capsys.readouterr().err


def test_retrieval_scores_by_hand() -> None:
    # Four points on a line: a0 and a1 close, b0 and b1 close; a1 is also near b0.
    angles = np.array([0.0, 0.3, 0.5, 0.8])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array(["a", "a", "b", "b"])
    scores = retrieval_scores(vectors, labels)
    # a0: a1 first → AP 1; a1: b0 (0.2) then a0 (0.3) → AP 1/2; b0: a1 (0.2) then b1 (0.3) → 1/2; b1: b0 → 1.
    assert scores["map"] == pytest.approx(0.75)
    assert scores["top1"] == pytest.approx(0.5)
