"""``visual-search model info|export|eval`` through the real console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.hub import main


def test_info_prints_sidecar_and_backend(exported_models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", str(exported_models["int8"]), "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    sidecar_text, backend_line = out.rsplit("backend:", 1)
    assert json.loads(sidecar_text)["variant"] == "int8"
    assert "onnxruntime on CPU" in backend_line


def test_info_says_what_auto_runs_and_why(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino")
    cache = tmp_path / "choice.json"
    args = ["model", "info", str(tiny_model), "--threads", "1", "--backend-cache", str(cache)]
    assert main(args) == 0
    out = capsys.readouterr().out.split("backend:", 1)[1]
    assert "chosen: measured — measured: " in out
    runs = [line for line in out.splitlines() if line.endswith("<- runs")]
    assert len(runs) == 1 and ("onnxruntime/cpu" in out and "openvino/CPU" in out)
    assert main(args) == 0
    assert "chosen: cached — cached from " in capsys.readouterr().out
    assert main([*args, "--remeasure"]) == 0
    assert "chosen: measured — " in capsys.readouterr().out


def test_info_on_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_with_missing_weights_file_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "export", "--out", str(tmp_path), "--variants", "fp32", "--weights", str(tmp_path / "w.pth")])
    assert code == 2
    assert "w.pth does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))


def test_export_reuses_valid_files(exported_models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = exported_models["fp32"].parent
    assert main(["model", "export", "--out", str(out_dir), "--variants", "fp32,int8"]) == 0
    out = capsys.readouterr().out
    assert "int8:" in out and "NN agree" in out


def test_eval_on_empty_folder_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "eval", "--models", str(tmp_path)]) == 2
    assert "no exported models" in capsys.readouterr().err
