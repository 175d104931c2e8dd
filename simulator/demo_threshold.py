"""``python -m simulator.demo_threshold``: the score distributions the demo's ``VS_MIN_SCORE`` is chosen from.

Plays the sample video through the device's path (the model file, its crop, its region vectors) and searches
every frame against the demo's index the way the search Lambda does (projection head included when the index
is adapted), then prints the top-1 score percentiles of frames that show a catalog item and of frames that
do not, and what share of each a threshold keeps. ``--no-adapt`` measures the index without its head.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from simulator.demo import MODEL_DIR, REPO_ROOT, ensure_index
from simulator.demo_adapt import DemoAdaptation, ensure_adapted
from simulator.sample_data import ensure_sample_data

THRESHOLDS = (0.4, 0.45, 0.5, 0.52, 0.55, 0.56, 0.58, 0.6, 0.65, 0.68, 0.7, 0.75)


def top1_scores(model: Path, index_dir: Path, video: Path, use_head: bool = True) -> list[tuple[float, str | None]]:
    """(top-1 score, top-1 item id) of every frame of ``video``."""
    from cloud_lambda.catalog.layout import load_catalog
    from cloud_lambda.index.fold import search_items
    from model.featurizer import Featurizer
    from model.retrieval.settings import effective_crop

    featurizer = Featurizer(model)
    crop = effective_crop(featurizer.sidecar, None)
    catalog = load_catalog(index_dir)
    capture = cv2.VideoCapture(str(video))
    out: list[tuple[float, str | None]] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        regions = featurizer.featurize_regions(crop.prepare(frame, featurizer.input_size)[None])[0]
        head = catalog.head if use_head else None
        if head is None and catalog.head is not None:  # the index holds projected vectors: compare raw ones
            raw = np.load(index_dir / "vectors.npy")
            sims = (regions @ raw.T).max(axis=0)
            best = int(np.argmax(sims))
            out.append((float(sims[best]), catalog.ids[int(catalog.owners[best])]))
            continue
        scores, items = search_items(catalog.index, catalog.owners, catalog.views.count, regions, 1, head)
        out.append((float(scores[0]), catalog.ids[int(items[0])] if items[0] >= 0 else None))
    capture.release()
    return out


def report(scores: list[tuple[float, str | None]], truth: list[dict[str, Any]]) -> str:
    shown = [(s, top == t["item"]) for (s, top), t in zip(scores, truth, strict=True) if t["item"] is not None]
    other = [s for (s, _), t in zip(scores, truth, strict=True) if t["item"] is None]
    shown_scores = np.array([s for s, _ in shown])
    lines = [
        f"catalog-object frames {len(shown)}: top-1 correct {np.mean([c for _, c in shown]):.3f};"
        f" score min {shown_scores.min():.3f} p5 {np.percentile(shown_scores, 5):.3f}"
        f" p50 {np.percentile(shown_scores, 50):.3f}",
        f"other frames {len(other)}: score p50 {np.percentile(other, 50):.3f} p90 {np.percentile(other, 90):.3f}"
        f" max {max(other):.3f}",
        "| threshold | catalog frames kept with the correct top match | other frames matched |",
        "|---|---|---|",
    ]
    for t in THRESHOLDS:
        kept = np.mean([s >= t and c for s, c in shown])
        lines.append(f"| {t:.2f} | {kept:.3f} | {np.mean([s >= t for s in other]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.demo_threshold", description=__doc__)
    parser.add_argument("--state", type=Path, default=REPO_ROOT / ".state")
    parser.add_argument("--no-adapt", action="store_true", help="score the index without its projection head")
    args = parser.parse_args(argv)
    from model.export.api import ensure_exported

    model = ensure_exported(MODEL_DIR, ("int8",), progress=True)["int8"]
    sample = ensure_sample_data(args.state / "sample")
    index_dir = ensure_index(sample, model, args.state / "demo-index")
    if not args.no_adapt:
        ensure_adapted(DemoAdaptation(index_dir, sample.images_dir, sample.items_file, model))
    print(report(top1_scores(model, index_dir, sample.video, not args.no_adapt), sample.truth()["frames"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
