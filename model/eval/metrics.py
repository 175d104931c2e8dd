"""Retrieval metrics over a query × gallery similarity matrix (inner product of L2-normalized vectors)."""

from __future__ import annotations

import numpy as np


def ranked_relevance(similarity: np.ndarray, relevant: np.ndarray, exclude_self: bool) -> np.ndarray:
    """Boolean ``[Q, G]`` relevance in rank order; with ``exclude_self`` the diagonal is never retrieved."""
    sim = similarity.astype(np.float64, copy=True)
    rel = relevant.copy()
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
        np.fill_diagonal(rel, False)
    order = np.argsort(-sim, axis=1, kind="stable")
    ranked = np.take_along_axis(rel, order, axis=1)
    if exclude_self:
        ranked = ranked[:, :-1]  # the query itself, ranked last
    return ranked


def top1(ranked: np.ndarray) -> float:
    return float(ranked[:, 0].mean())


def precision_at(ranked: np.ndarray, k: int) -> float:
    return float(ranked[:, :k].mean())


def mean_average_precision(ranked: np.ndarray) -> float:
    hits = np.cumsum(ranked, axis=1)
    ranks = np.arange(1, ranked.shape[1] + 1)
    precision = hits / ranks
    n_rel = ranked.sum(axis=1)
    ap = np.where(n_rel > 0, (precision * ranked).sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    return float(ap[n_rel > 0].mean())
