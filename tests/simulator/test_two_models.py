"""A fleet mid-rollout on the real local stack (mosquitto, redis-server, rule bridge, HTTP API as separate
processes), driven by the commands a user runs: two models indexed into one root (`catalog index --root`),
`stack up --index-dir ROOT`, and three cameras (`simulate --folder`), two on indexed models and one on a
model with no index. Both indexed cameras get their own model's matches; the third is refused with
``no_index_for_model`` in the bridge log and stores nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.testing import build_tiny_model
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up
from simulator.stack.state import StackState

ITEMS = 5


def visual_search(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`visual-search ARGS` (the console script is `model.hub:main`)."""
    return subprocess.run(
        [sys.executable, "-m", "model.hub", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _pattern(seed: int) -> np.ndarray:
    blocks = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(blocks, (256, 256), interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Path], StackState]]:
    root = tmp_path_factory.mktemp("rollout")
    images = root / "images"
    images.mkdir()
    for i in range(ITEMS):
        cv2.imwrite(str(images / f"sku-{i}.png"), _pattern(i))
    models = {name: build_tiny_model(root / f"{name}.onnx", seed=seed) for name, seed in (("a", 0), ("b", 1), ("c", 2))}
    for name in ("a", "b"):
        done = visual_search(
            "catalog", "index", str(images), "--root", str(root / "indexes"), "--model", str(models[name]),
            "--workers", "0", "--no-progress",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    config = StackConfig(
        state_dir=root / "stack", mqtt_port=0, redis_port=0, http_port=0, index_dir=root / "indexes", min_score=0.5
    )
    state, started = stack_up(config)
    assert started
    try:
        yield images, models, state
    finally:
        outcome = stack_down(config.state_dir)
        assert set(outcome.values()) <= {"stopped"}, outcome


def camera(images: Path, model: Path, device: str, state: StackState) -> dict:
    mqtt = state.service("mosquitto")
    assert mqtt is not None
    done = visual_search(
        "simulate", "--folder", str(images), "--fast", "--every-frame", "--model", str(model),
        "--backend", "onnxruntime", "--device-id", device, "--broker", f"mqtt://127.0.0.1:{mqtt.port}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict = json.loads(done.stdout)
    assert summary["published"] == ITEMS and summary["dropped"] == 0
    return summary


def records(state: StackState, device: str, want: int, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    found: list[dict] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{state.urls['api']}/devices/{device}/matches?n=100", timeout=5) as resp:
            found = json.loads(resp.read())["records"]
        if len(found) >= want:
            break
        time.sleep(0.2)
    return found


def model_id(model: Path) -> str:
    return str(json.loads(model.with_suffix(".json").read_text())["model_id"])


def test_two_models_live_at_once_both_match(rollout: tuple[Path, dict[str, Path], StackState]) -> None:
    images, models, state = rollout
    for name in ("a", "b"):
        camera(images, models[name], f"cam-{name}", state)
    for name in ("a", "b"):
        got = records(state, f"cam-{name}", ITEMS)
        assert len(got) == ITEMS
        assert {r["model_id"] for r in got} == {model_id(models[name])}
        # Each frame is a catalog picture: its own item comes first, with its own model's near-perfect score.
        assert sorted(r["matches"][0]["id"] for r in got) == [f"sku-{i}" for i in range(ITEMS)]
        assert all(r["matches"][0]["score"] > 0.99 for r in got)


def test_a_camera_on_a_model_with_no_index_is_refused_with_the_reason(
    rollout: tuple[Path, dict[str, Path], StackState],
) -> None:
    images, models, state = rollout
    camera(images, models["c"], "cam-c", state)
    bridge = state.service("bridge")
    assert bridge is not None
    deadline = time.monotonic() + 30
    refusals: list[dict] = []
    while time.monotonic() < deadline and len(refusals) < ITEMS:
        lines = [json.loads(line) for line in Path(bridge.log).read_text().splitlines() if line.startswith("{")]
        refusals = [
            line for line in lines if line.get("event") == "feature_rejected" and line.get("topic_device") == "cam-c"
        ]
        time.sleep(0.2)
    assert len(refusals) == ITEMS
    assert {line["reason"] for line in refusals} == {"no_index_for_model"}
    message = refusals[0]["message"]
    assert model_id(models["c"]) in message
    assert model_id(models["a"]) in message and model_id(models["b"]) in message
    assert records(state, "cam-c", 1, timeout_s=1) == []
