"""Training curves as a PNG drawn with OpenCV (no plotting library in the export environment)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

_TRAIN = (200, 110, 30)  # BGR blue
_VAL = (40, 120, 230)  # BGR orange
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _panel(
    title: str, epochs: Sequence[int], series: dict[str, Sequence[float]], y_range: tuple[float, float] | None
) -> np.ndarray:
    w, h, left, right, top, bottom = 560, 400, 64, 20, 40, 48
    img = np.full((h, w, 3), 255, np.uint8)
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    lo, hi = y_range if y_range else (min(values, default=0.0), max(values, default=1.0))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x_lo, x_hi = (min(epochs), max(epochs)) if epochs else (1, 1)
    x_span = max(x_hi - x_lo, 1)

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x_lo) / x_span * (w - left - right)
        py = h - bottom - (y - lo) / (hi - lo) * (h - top - bottom)
        return round(px), round(py)

    for i in range(6):
        y = lo + (hi - lo) * i / 5
        _, py = to_px(x_lo, y)
        cv2.line(img, (left, py), (w - right, py), (225, 225, 225), 1)
        cv2.putText(img, f"{y:.2f}", (4, py + 4), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    step = max(1, len(epochs) // 10)
    for e in list(epochs)[::step]:
        px, _ = to_px(e, lo)
        cv2.line(img, (px, h - bottom), (px, h - bottom + 4), (60, 60, 60), 1)
        cv2.putText(img, str(e), (px - 4, h - bottom + 18), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (60, 60, 60), 1)
    cv2.putText(img, title, (left, 26), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "epoch", (w // 2 - 20, h - 10), _FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    for k, (name, ys) in enumerate(series.items()):
        colour = _TRAIN if name.startswith("train") else _VAL
        points = [to_px(x, y) for x, y in zip(epochs, ys, strict=False) if np.isfinite(y)]
        for a, b in itertools.pairwise(points):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
        lx = w - right - 150
        ly = top + 18 + 20 * k
        cv2.line(img, (lx, ly - 4), (lx + 24, ly - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(img, name, (lx + 30, ly), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def plot_history(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Accuracy (train/validation) and loss (train/validation) per epoch, side by side."""
    epochs = [int(r["epoch"]) for r in history]
    accuracy = _panel(
        "accuracy",
        epochs,
        {"train acc": [r["train_acc"] for r in history], "validation acc": [r["val_acc"] for r in history]},
        (0.0, 1.0),
    )
    # Plain cross-entropy on both sides when recorded: the training objective adds label smoothing and the
    # metric term, which would make the curves incomparable.
    train_key = "train_ce" if all("train_ce" in r for r in history) else "train_loss"
    loss = _panel(
        "cross-entropy loss" if train_key == "train_ce" else "loss",
        epochs,
        {"train loss": [r[train_key] for r in history], "validation loss": [r["val_loss"] for r in history]},
        None,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), np.hstack([accuracy, loss])):
        raise OSError(f"could not write plot {path}")
    tmp.replace(path)
    return path
