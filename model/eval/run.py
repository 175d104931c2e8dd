"""``visual-search model eval``: retrieval quality of each exported variant against a raw-pixel baseline."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.eval.datasets import RetrievalSet, fashion_mnist, instance_views, natural_pairs
from model.eval.embedders import Embedder, FeaturizerEmbedder, RawPixelEmbedder
from model.eval.metrics import mean_average_precision, precision_at, ranked_relevance, top1

log = logging.getLogger(__name__)


@dataclass
class Scores:
    embedder: str
    dataset: str
    metrics: dict[str, float]
    seconds: float


def score(embedder: Embedder, data: RetrievalSet) -> Scores:
    started = time.perf_counter()
    vectors = embedder.embed(data.images)
    sim = vectors @ vectors.T
    relevant = data.labels[:, None] == data.labels[None, :]
    ranked = ranked_relevance(sim, relevant, exclude_self=True)
    if data.queries is not None:
        ranked = ranked[data.queries]
    metrics = {"top1": top1(ranked), "P@10": precision_at(ranked, 10), "mAP": mean_average_precision(ranked)}
    return Scores(embedder.name, data.name, metrics, time.perf_counter() - started)


def find_models(models_dir: Path, backbone: str | None = None) -> list[Path]:
    order = {"fp32": 0, "int8": 1, "fp16": 2}
    found = [p for p in sorted(Path(models_dir).glob("*.onnx")) if p.with_suffix(".json").exists()]
    if backbone:
        found = [p for p in found if p.name.startswith(backbone + "-")]
    return sorted(found, key=lambda p: (p.name.rsplit("-", 1)[0], order.get(p.stem.rsplit("-", 1)[-1], 9)))


def evaluate(
    models: Sequence[Path],
    backend: str = "auto",
    threads: int | None = None,
    fashion_count: int = 2000,
    views_per_photo: int = 5,
    progress: bool = True,
) -> list[Scores]:
    from tqdm import tqdm

    datasets = [instance_views(views_per_photo), natural_pairs()]
    if fashion_count > 0:
        datasets.append(fashion_mnist(fashion_count))
    embedders: list[Embedder] = [RawPixelEmbedder()]
    embedders += [FeaturizerEmbedder(p, backend=backend, threads=threads) for p in models]
    results = []
    with tqdm(total=len(datasets) * len(embedders), desc="model eval", disable=not progress, leave=False) as bar:
        for data in datasets:
            for embedder in embedders:
                results.append(score(embedder, data))
                bar.update(1)
    return results


TABLE_METRICS = {
    "instance: photos × camera views": ("top1", "mAP"),
    "natural view pairs (+ distractors)": ("top1",),
}


def print_tables(results: Sequence[Scores]) -> None:
    """One markdown table per dataset; int8/fp16 rows also show the mAP change against fp32."""
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        keys = TABLE_METRICS.get(dataset, ("P@10", "mAP"))
        fp32_map = next((r.metrics["mAP"] for r in rows if r.embedder.startswith("fp32")), None)
        header = ["embedder", *(("partner@1" if k == "top1" and "pairs" in dataset else k) for k in keys)]
        header += ["ΔmAP vs fp32", "s"]
        print(f"\n### {dataset}")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            delta = (
                ""
                if fp32_map is None or r.embedder.startswith(("fp32", "raw"))
                else f"{r.metrics['mAP'] - fp32_map:+.4f}"
            )
            cells = [r.embedder, *(f"{r.metrics[k]:.4f}" for k in keys), delta, f"{r.seconds:.1f}"]
            print("| " + " | ".join(cells) + " |")
    np.set_printoptions()
