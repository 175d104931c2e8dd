"""Featurizer speed: every backend on the real EfficientNet-Lite0, in one run, as ratios to torch eager fp32.

Batch 1 is latency (median of rounds, what the camera loop sees); batches 8 and 32 are throughput (images/s,
what catalog indexing sees). 2 threads everywhere. Also the frame preparation cost next to inference.
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
    from model.prepare import prepare_frame

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

    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    prep_ms = _median_ms(lambda: prepare_frame(frame, 224), 20 if quick else 100)
    import cv2

    area_ms = _median_ms(
        lambda: cv2.resize(frame[:, 280:1000], (224, 224), interpolation=cv2.INTER_AREA), 20 if quick else 100
    )
    best = min(rows, key=lambda r: float(r[1]))  # type: ignore[arg-type]
    print_table(
        "frame preparation, 1280×720 → 224 (1 call, same process)",
        ["step", "ms", "share of best b1 inference"],
        [
            ["prepare_frame (crop + 2× box + INTER_AREA)", prep_ms, prep_ms / float(best[1])],  # type: ignore[arg-type]
            ["plain INTER_AREA from 720 px crop", area_ms, area_ms / float(best[1])],  # type: ignore[arg-type]
        ],
        f"best inference: {best[0]} at {float(best[1]):.2f} ms",  # type: ignore[arg-type]
    )
