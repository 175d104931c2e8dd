"""Dimension reduction in front of a faiss index: the top principal directions of the catalog, learned at build.

Not faiss's ``PCAMatrix``: it centres the vectors, and for inner-product search centring drops each item's
``<x, mean>`` term from its score, which for non-negative CNN descriptors (large common mean) reorders the
neighbours. Here the directions are the eigenvectors of the *uncentred* second moment ``XᵀX / N``, so
``<Px, Pq>`` is the best rank-d approximation of ``<x, q>`` over the catalog and scores stay cosine-like
(slightly lower: the dropped directions' share is lost). Stored as a faiss ``LinearTransform`` inside the
index file, so a loaded index projects queries itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def principal_directions(sample: np.ndarray, out_dim: int) -> tuple[np.ndarray, float]:
    """(``[out_dim, D]`` rows = top eigenvectors of the uncentred second moment, share of energy they keep)."""
    x = np.asarray(sample, dtype=np.float64)
    moment = x.T @ x / max(1, x.shape[0])
    values, vectors = np.linalg.eigh(moment)
    order = np.argsort(values)[::-1]
    kept = float(values[order[:out_dim]].sum() / max(values.sum(), 1e-30))
    return np.ascontiguousarray(vectors[:, order[:out_dim]].T, dtype=np.float32), kept


def pca_transform(sample: np.ndarray, out_dim: int) -> Any:
    import faiss

    directions, _ = principal_directions(sample, out_dim)
    transform = faiss.LinearTransform(sample.shape[1], out_dim, False)
    faiss.copy_array_to_vector(directions.ravel(), transform.A)
    transform.is_trained = True
    return transform


def wrap(transform: Any, inner: Any) -> Any:
    import faiss

    # faiss's Python layer keeps references to both parts (add_ref_in_constructor), so they live as long as
    # the wrapper; a read_index copy owns its parts in C++.
    return faiss.IndexPreTransform(transform, inner)
