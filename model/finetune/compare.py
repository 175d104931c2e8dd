"""Before/after: retrieval quality of the base and the fine-tuned featurizer on a held-out labelled set.

Each held-out image queries all the others (leave-one-out); an image of the same class is a correct
match. Reported: mAP over all queries and top-1 (the nearest neighbour has the query's class). Both
models run as exported ONNX through :class:`model.featurizer.Featurizer`, as the catalog indexer would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.featurizer import Featurizer
from model.finetune.data.base import Sample
from model.finetune.loader import decode
from model.prepare import prepare_frame


def retrieval_scores(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out mAP and top-1 over L2-normalized ``vectors``; queries without a relevant item are skipped."""
    n = len(labels)
    if n < 2:
        raise ValueError("retrieval needs at least 2 held-out images")
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, : n - 1]  # the query itself sorts last
    relevant = labels[order] == labels[:, None]
    hits = relevant.sum(axis=1)
    valid = hits > 0
    if not valid.any():
        raise ValueError("no held-out class has two images: retrieval cannot be scored")
    ranks = np.arange(1, n, dtype=np.float64)
    precision_at_hit = np.cumsum(relevant, axis=1) / ranks
    ap = (precision_at_hit * relevant).sum(axis=1)[valid] / hits[valid]
    return {"map": float(ap.mean()), "top1": float(relevant[valid, 0].mean()), "queries": int(valid.sum())}


def embed(model_path: Path, samples: list[Sample], batch: int = 32, progress: bool = True) -> np.ndarray:
    featurizer = Featurizer(model_path, backend="onnxruntime", device="cpu")
    out = []
    for i in tqdm(range(0, len(samples), batch), desc=f"embedding with {featurizer.model_id}", disable=not progress):
        frames = np.stack([prepare_frame(decode(str(s.path)), featurizer.input_size) for s in samples[i : i + batch]])
        out.append(featurizer.featurize(frames))
    return np.concatenate(out) if out else np.zeros((0, featurizer.dim), np.float32)


def compare_models(models: dict[str, Path], samples: list[Sample], progress: bool = True) -> dict[str, Any]:
    """``{"base": path, "finetuned": path}`` → scores per model on the same held-out images."""
    labels = np.array([s.label for s in samples])
    result: dict[str, Any] = {"images": len(samples), "classes": len(set(labels.tolist())), "models": {}}
    for name, path in models.items():
        featurizer_id = Featurizer(path, backend="onnxruntime", device="cpu", warmup=0).model_id
        scores = retrieval_scores(embed(path, samples, progress=progress), labels)
        result["models"][name] = {"model": str(path), "model_id": featurizer_id, **scores}
    if {"base", "finetuned"} <= set(result["models"]):
        base, tuned = result["models"]["base"], result["models"]["finetuned"]
        result["delta"] = {"map": tuned["map"] - base["map"], "top1": tuned["top1"] - base["top1"]}
    return result


def format_comparison(result: dict[str, Any]) -> str:
    lines = [f"held-out retrieval: {result['images']} images, {result['classes']} classes (leave-one-out)"]
    lines.append(f"{'model':<10} {'mAP':>7} {'top-1':>7}  model id")
    for name, scores in result["models"].items():
        lines.append(f"{name:<10} {scores['map']:>7.4f} {scores['top1']:>7.4f}  {scores['model_id']}")
    if "delta" in result:
        lines.append(f"{'change':<10} {result['delta']['map']:>+7.4f} {result['delta']['top1']:>+7.4f}")
    return "\n".join(lines)
