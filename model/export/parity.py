"""Parity figures measured at export: how closely a variant reproduces its reference on real photos."""

from __future__ import annotations

import numpy as np

from model.sidecar import Parity


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def nn_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of rows whose nearest other row (inner product) is the same under both embeddings."""
    if len(reference) < 2:
        return 1.0
    sim_ref = reference @ reference.T
    sim_cand = candidate @ candidate.T
    np.fill_diagonal(sim_ref, -np.inf)
    np.fill_diagonal(sim_cand, -np.inf)
    return float(np.mean(sim_ref.argmax(axis=1) == sim_cand.argmax(axis=1)))


def measure(reference_name: str, reference: np.ndarray, candidate: np.ndarray) -> Parity:
    cos = cosine_rows(reference, candidate)
    return Parity(
        reference=reference_name,
        images=len(cos),
        cosine_min=float(cos.min()),
        cosine_mean=float(cos.mean()),
        nn_agreement=nn_agreement(reference, candidate),
    )
