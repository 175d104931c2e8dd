"""Evaluation metrics on hand-made rankings, and a small real run of the evaluation sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.eval.datasets import fashion_mnist, natural_pairs
from model.eval.embedders import FeaturizerEmbedder, RawPixelEmbedder
from model.eval.metrics import mean_average_precision, precision_at, ranked_relevance, top1
from model.eval.run import score


def test_metrics_on_a_known_ranking() -> None:
    ranked = np.array([[True, False, True, False], [False, True, False, False]])
    assert top1(ranked) == 0.5
    assert precision_at(ranked, 2) == 0.5
    # AP row 0: (1/1 + 2/3) / 2; row 1: (1/2) / 1.
    assert np.isclose(mean_average_precision(ranked), ((1 + 2 / 3) / 2 + 0.5) / 2)


def test_ranking_excludes_the_query_itself() -> None:
    sim = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
    labels = np.array([0, 1, 0])
    ranked = ranked_relevance(sim, labels[:, None] == labels[None, :], exclude_self=True)
    assert ranked.shape == (3, 2)
    assert ranked[0].tolist() == [True, False] and ranked[1].tolist() == [False, False]


def test_fashion_mnist_sample_is_stratified() -> None:
    data = fashion_mnist(100)
    assert len(data.images) == 100 and np.bincount(data.labels).tolist() == [10] * 10
    assert data.images[0].shape == (28, 28, 3) and data.images[0].dtype == np.uint8


def test_real_model_beats_raw_pixels_on_natural_pairs(exported_models: dict[str, Path]) -> None:
    data = natural_pairs()
    model = score(FeaturizerEmbedder(exported_models["int8"], backend="onnxruntime", threads=2), data)
    raw = score(RawPixelEmbedder(), data)
    assert model.metrics["top1"] >= 0.8
    assert model.metrics["top1"] > raw.metrics["top1"]
