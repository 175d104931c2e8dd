"""Featurizer speed: every backend on the real EfficientNet-Lite0, in one run, as ratios to torch eager fp32.

Batch 1 is latency (median of rounds, what the camera loop sees); batches 8 and 32 are throughput (images/s,
what catalog indexing sees). 2 threads everywhere. Then the backend ``auto`` picks next to every candidate
present (its start-up trial, no cache), and frame preparation options as a share of that pick's inference
time (target ≤ 0.25).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from bench.table import print_table

THREADS = 2
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"


def _median_ms(fn: Callable[[], object], rounds: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _torch_runner() -> Callable[[np.ndarray], object]:
    import torch

    from model.backbones.base import get_backbone
    from model.export.graph import FeaturizerGraph

    torch.set_num_threads(THREADS)
    backbone = get_backbone("efficientnet-lite0")
    graph = FeaturizerGraph(backbone.build(), backbone.spec).eval()

    def run(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return graph(torch.from_numpy(batch))

    return run


def _backend_runner(path: Path, backend: str, **kwargs: object) -> tuple[Callable[[np.ndarray], object], str]:
    from model.runtime.base import BACKENDS, create_backend

    if kwargs:
        create_backend(str(path), backend)  # loads the plugins
        impl = BACKENDS[backend](str(path), device="cpu", threads=THREADS, **kwargs)  # type: ignore[call-arg]
    else:
        impl = create_backend(str(path), backend, device="cpu", threads=THREADS)
    return impl.run, impl.info.describe()


def run(quick: bool) -> None:
    from model.export.api import ensure_exported

    models = ensure_exported(CACHE, ("fp32", "int8"))
    rng = np.random.default_rng(0)
    frames = {n: rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8) for n in (1, 8, 32)}
    rounds = {1: 15 if quick else 60, 8: 2 if quick else 6, 32: 1 if quick else 3}

    candidates: list[tuple[str, Callable[[], tuple[Callable[[np.ndarray], object], str]]]] = [
        ("torch eager fp32", lambda: (_torch_runner(), f"torch {THREADS} threads")),
        ("onnxruntime fp32", lambda: _backend_runner(models["fp32"], "onnxruntime")),
        ("onnxruntime int8", lambda: _backend_runner(models["int8"], "onnxruntime")),
        ("OpenVINO fp32 (f32)", lambda: _backend_runner(models["fp32"], "openvino", precision="f32")),
        ("OpenVINO fp32 (default hint)", lambda: _backend_runner(models["fp32"], "openvino")),
        ("OpenVINO int8", lambda: _backend_runner(models["int8"], "openvino")),
    ]
    rows: list[list[object]] = []
    reference: dict[int, float] = {}
    for name, make in candidates:
        runner, described = make()
        b1_ms = _median_ms(partial(runner, frames[1]), rounds[1])
        throughput = {}
        for n in (8, 32):
            ms = _median_ms(partial(runner, frames[n]), rounds[n], warmup=1)
            throughput[n] = n / (ms / 1e3)
        if not reference:
            reference = {1: b1_ms, 8: throughput[8], 32: throughput[32]}
        rows.append(
            [
                name,
                b1_ms,
                reference[1] / b1_ms,
                throughput[8],
                throughput[8] / reference[8],
                throughput[32],
                throughput[32] / reference[32],
                described,
            ]
        )
        print(f"  {name}: b1 {b1_ms:.2f} ms", flush=True)
    print_table(
        f"featurizer — EfficientNet-Lite0 224 px, {THREADS} threads (ratios to torch eager fp32)",
        ["backend", "b1 ms", "b1 ×", "b8 img/s", "b8 ×", "b32 img/s", "b32 ×", "runs as"],
        rows,
        "b1 × = torch eager b1 latency / this b1 latency; b8/b32 × = throughput ratio. One process, same inputs.",
    )

    auto_ms = _auto_table(models["int8"], frames[1], rounds[1])
    _prepare_table(auto_ms, 20 if quick else 100)


def _auto_table(model: Path, frame: np.ndarray, rounds: int) -> float:
    """What ``auto`` picks on this machine (a fresh trial, no cache) next to every candidate, in one run."""
    from model.runtime.selection import select_backend

    selected = select_backend(str(model), "auto", threads=THREADS, cache=False)
    choice = selected.choice
    pick = f"{choice.backend}/{choice.device}"
    pick_ms = _median_ms(partial(selected.backend.run, frame), rounds)
    rows: list[list[object]] = [
        [
            label,
            trial_ms,
            trial_ms / choice.measured_ms[pick] if pick in choice.measured_ms else "-",
            "<- auto" if label == pick else "",
        ]
        for label, trial_ms in sorted(choice.measured_ms.items(), key=lambda item: item[1])
    ]
    rows += [[label, "skipped", "-", error[:60]] for label, error in sorted(choice.skipped.items())]
    print_table(
        f"auto's pick — int8 model, {THREADS} threads, start-up trial (model/runtime/trial.py)",
        ["candidate", "trial ms", "× auto's pick", ""],
        rows,
        f"auto picks {pick} — {choice.reason}; the pick re-timed over {rounds} runs: "
        f"{pick_ms:.2f} ms. GPU candidates (CUDA, TensorRT, OpenVINO GPU) join when present — none here.",
    )
    return pick_ms


def _resize_in_graph(side: int, size: int) -> Callable[[np.ndarray], object] | None:
    """The 'resize inside the model' option: an ONNX Resize (antialiased, opset 18) on onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Resize", ["xf", "", "", "sizes"], ["y"], mode="linear", antialias=1, axes=[1, 2]),
    ]
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [2], [size, size])
    graph = helper.make_graph(
        nodes,
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, side, side, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size, size, 3])],
        [sizes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda square: session.run(None, {"x": square[None]})


def _prepare_table(inference_ms: float, rounds: int) -> None:
    """Frame preparation options as a share of the inference auto picked (target ≤ 0.25), in one run."""
    import cv2

    from model.prepare import Roi, crop_square, prepare_frame

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    small = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
    centre = Roi(0.2, 0.2, 0.6, 0.6)  # the default model's query crop (centre 0.6)
    square, square_06 = np.ascontiguousarray(crop_square(frame)), np.ascontiguousarray(crop_square(frame, centre))
    options: list[tuple[str, Callable[[], object]]] = [
        ("prepare_frame, whole centre square (720 px)", lambda: prepare_frame(frame, 224)),
        ("prepare_frame, centre 0.6 crop (432 px, the device default)", lambda: prepare_frame(frame, 224, centre)),
        ("before: INTER_AREA from 720 px", lambda: cv2.resize(square, (224, 224), interpolation=cv2.INTER_AREA)),
        ("before: INTER_AREA from 432 px", lambda: cv2.resize(square_06, (224, 224), interpolation=cv2.INTER_AREA)),
        ("option: smaller camera frame, 640×360 → prepare_frame", lambda: prepare_frame(small, 224)),
    ]
    in_graph = _resize_in_graph(720, 224)
    if in_graph is not None:
        options.append(("option: resize inside the graph (ORT Resize, antialias)", partial(in_graph, square)))
    rows = []
    for name, fn in options:
        ms = _median_ms(fn, rounds)
        rows.append([name, ms, ms / inference_ms, "yes" if ms <= 0.25 * inference_ms else "no"])
    print_table(
        "frame preparation, 1280×720 → 224 (1 call; share of auto's pick's inference)",
        ["option", "ms", "× inference", "≤ 0.25"],
        rows,
        f"inference: auto's pick at {inference_ms:.2f} ms (table above). prepare_frame = bilinear to 448 + exact "
        "2×2 box (model/prepare.py); a 640×360 camera frame gives the centre 0.6 crop only 216 px (< 224: upscaled).",
    )
