"""Training a catalog's projection head (:class:`model.retrieval.head.ProjectionHead`) with an ArcFace margin.

Every catalog item is its own class. A training sample is one training view's region vectors ``[R, D]`` as the
device computes them; the class score of a view is its best region's cosine to the class centre (the search
folds regions with max, so training does the same: a view is right when *some* region matches). The true
class's best cosine gets the additive angular margin (ArcFace, Deng et al. 2019) before the scaled softmax.
The clean catalog vectors are samples too, so the projected catalog stays at its class centre.

Linear on frozen features: minutes on a 2-core CPU for ~40 items × 100 views.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model.retrieval.head import ProjectionHead


@dataclass(frozen=True)
class HeadSettings:
    out_dim: int = 256
    epochs: int = 30
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    seed: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def pca_init(vectors: np.ndarray, out_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean ``[D]``, the top ``out_dim`` principal directions ``[D, out_dim]``) of ``vectors [M, D]``.

    From the ``D × D`` covariance (one product and a symmetric eigendecomposition): an SVD of the ``M × D``
    matrix costs minutes on a shared 2-core machine, this about a second.
    """
    from threadpoolctl import threadpool_limits

    mean = vectors.mean(axis=0)
    centred = (vectors - mean).astype(np.float64)
    # One BLAS thread: on shared cores a second one spins more than it computes (measured 5 s vs 40 s).
    with threadpool_limits(1):
        _, vecs = np.linalg.eigh(centred.T @ centred)
    dirs = vecs[:, ::-1][:, :out_dim]  # eigh sorts ascending
    return mean.astype(np.float32), np.ascontiguousarray(dirs, dtype=np.float32)


@dataclass
class HeadState:
    """Everything training needs to continue after ``epoch`` epochs exactly as if it had never stopped."""

    epoch: int
    weight: np.ndarray
    mean: np.ndarray
    centres: np.ndarray
    """Class centres as trained (not renormalized)."""
    moments: dict[str, np.ndarray]
    """AdamW's step and first/second moments of the weight and the centres."""

    @property
    def head(self) -> ProjectionHead:
        return ProjectionHead(self.weight, self.mean)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez``."""
        return {
            "epoch": np.array(self.epoch),
            "weight": self.weight,
            "mean": self.mean,
            "centres": self.centres,
            **{f"moment_{k}": v for k, v in self.moments.items()},
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray]) -> HeadState:
        moments = {k[len("moment_") :]: np.asarray(data[k]) for k in data if k.startswith("moment_")}
        return cls(
            int(data["epoch"]),
            np.asarray(data["weight"]),
            np.asarray(data["mean"]),
            np.asarray(data["centres"]),
            moments,
        )


def train_head(
    views: np.ndarray,
    labels: np.ndarray,
    catalog: np.ndarray,
    settings: HeadSettings = HeadSettings(),
    on_epoch: Callable[[float, HeadState], None] | None = None,
    start: HeadState | None = None,
) -> tuple[ProjectionHead, np.ndarray]:
    """Train on ``views [M, R, D]`` labelled ``labels [M]`` (item positions) and ``catalog [C, D]``.

    Returns the head and the normalized class centres ``[C, out_dim]``. ``on_epoch(loss, state)`` is called
    after every epoch (checkpointing, progress); ``start`` (a state it was given) resumes exactly.
    """
    import torch

    torch.manual_seed(settings.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: thread hand-offs cost more than they bring on shared cores
    try:
        return _fit(views, labels, catalog, settings, on_epoch, start)
    finally:
        torch.set_num_threads(threads)


_MOMENTS = ("exp_avg", "exp_avg_sq")


def _fit(
    views: np.ndarray,
    labels: np.ndarray,
    catalog: np.ndarray,
    settings: HeadSettings,
    on_epoch: Callable[[float, HeadState], None] | None,
    start: HeadState | None,
) -> tuple[ProjectionHead, np.ndarray]:
    import torch
    import torch.nn.functional as F

    items, dim = catalog.shape
    samples = np.concatenate([views, np.repeat(catalog[:, None, :], views.shape[1], axis=1)])
    targets = np.concatenate([labels, np.arange(items)]).astype(np.int64)
    if start is None:
        mean, weight = pca_init(np.concatenate([views.reshape(-1, dim), catalog]), settings.out_dim)
        centres0 = ((catalog - mean) @ weight).astype(np.float32)
        centres0 /= np.linalg.norm(centres0, axis=1, keepdims=True)
    else:
        mean, weight, centres0 = start.mean, start.weight, start.centres
    w = torch.nn.Parameter(torch.from_numpy(weight.astype(np.float32).copy()))
    centres = torch.nn.Parameter(torch.from_numpy(centres0.astype(np.float32).copy()))
    mu = torch.from_numpy(mean.astype(np.float32))
    x_all = torch.from_numpy(samples.astype(np.float32))
    y_all = torch.from_numpy(targets)
    optimizer = torch.optim.AdamW([w, centres], lr=settings.lr, weight_decay=settings.weight_decay)
    if start is not None and start.moments:
        for name, param in (("w", w), ("c", centres)):
            optimizer.state[param] = {
                "step": torch.tensor(float(start.moments[f"{name}_step"])),
                **{m: torch.from_numpy(start.moments[f"{name}_{m}"].copy()) for m in _MOMENTS},
            }
    cos_m, sin_m = float(np.cos(settings.margin)), float(np.sin(settings.margin))
    for epoch in range(0 if start is None else start.epoch, settings.epochs):
        for group in optimizer.param_groups:  # cosine decay, a pure function of the epoch (resume-safe)
            group["lr"] = settings.lr * 0.5 * (1 + np.cos(np.pi * epoch / settings.epochs))
        # One generator per epoch: a resumed run shuffles exactly as an uninterrupted one.
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(x_all))
        total = 0.0
        for begin in range(0, len(order), settings.batch):
            idx = torch.from_numpy(order[begin : begin + settings.batch])
            x, y = x_all[idx], y_all[idx]
            z = F.normalize((x - mu) @ w, dim=2)  # [B, R, d]
            cos = torch.einsum("brd,cd->brc", z, F.normalize(centres, dim=1)).amax(dim=1)  # [B, C]
            true = cos.gather(1, y[:, None]).clamp(-1 + 1e-6, 1 - 1e-6)
            with_margin = true * cos_m - torch.sqrt(1 - true * true) * sin_m
            loss = F.cross_entropy(cos.scatter(1, y[:, None], with_margin) * settings.scale, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(total / len(order), _snapshot(epoch + 1, optimizer, w, centres, mean))
    head = ProjectionHead(w.detach().numpy().copy(), mean)
    return head, F.normalize(centres.detach(), dim=1).numpy()


def _snapshot(epoch: int, optimizer: Any, w: Any, centres: Any, mean: np.ndarray) -> HeadState:
    """The training state after ``epoch`` epochs, optimizer moments included (what a resumed run continues)."""
    moments: dict[str, np.ndarray] = {}
    for name, param in (("w", w), ("c", centres)):
        state = optimizer.state[param]
        moments[f"{name}_step"] = np.array(float(state["step"]))
        moments.update({f"{name}_{m}": state[m].detach().numpy().copy() for m in _MOMENTS})
    return HeadState(epoch, w.detach().numpy().copy(), mean, centres.detach().numpy().copy(), moments)
