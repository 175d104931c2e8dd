"""``model eval --heldup --blank-sweep``: how the chosen default scores for each ``blank_below`` threshold.

The device featurizes the whole frame instead of its centre crop when under ``blank_below`` of the crop's pixels
lie on an edge (:mod:`model.retrieval.frame_crop`). The rule runs before the model, so one exported model serves
every threshold: each row swaps the rule on the chosen default's model and scores every query set, without and
with the catalog's projection head (one head, trained with the model's own rule; the training views it sees are
not the evaluation's). ``0`` turns the rule off. The default was chosen on ``--part tuning``
(docs/match-quality.md, "The whole frame when the crop is blank").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from model.eval.heldup.evaluate import EvalModel
from model.eval.heldup.run import CHOSEN, CHOSEN_VIEWS, ensure_model, score, train_head
from model.eval.heldup.sets import SET_NAMES, build_part
from model.eval.heldup.split import Part


def parse_thresholds(text: str) -> list[float]:
    """``--blank-sweep 0,0.1,0.15``: fractions in [0, 1]; a bad token is a ValueError naming it."""
    values = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"--blank-sweep: {token!r} is not a number (fractions of the crop's pixels)") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--blank-sweep: {token} is not in [0, 1] (a fraction of the crop's pixels)")
        values.append(value)
    if not values:
        raise ValueError("--blank-sweep: give at least one threshold, e.g. 0,0.1,0.15,0.2")
    return values


def blank_sweep(
    models: Path,
    part: Part,
    thresholds: Sequence[float],
    backend: str = "auto",
    threads: int | None = None,
    cache: Path = Path(".cache/heldup-eval"),
    camera_seeds: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[list[str]]:
    """One table row per (threshold, head): R@1 of each set and the share of its frames featurized whole."""
    data = build_part(part, camera_seeds=camera_seeds)
    echo(f"# {data.describe()}")
    model = EvalModel(ensure_model(models, CHOSEN, progress), cache / "vectors", backend, threads)
    head, _ = train_head(model, data, cache, progress=progress, views=CHOSEN_VIEWS)
    own = model.crop
    header = ["blank_below", "head"] + [f"{name} R@1 (whole)" for name in SET_NAMES]
    rows = [header]
    echo("| " + " | ".join(header) + " |")
    echo("|" + "---|" * len(header))
    try:
        for threshold in thresholds:
            model.crop = dataclasses.replace(own, blank_below=threshold or None)
            shares = {name: model.blank_share(data.sets[name].frames) for name in SET_NAMES}
            for label, with_head in (("—", None), ("head", head)):
                recall = score(data, model, CHOSEN_VIEWS, with_head)
                cells = [f"{threshold:g}" + (" (default)" if threshold == own.blank_below else ""), label]
                cells += [f"{recall[name][1]:.3f} ({shares[name]:.0%})" for name in SET_NAMES]
                rows.append(cells)
                echo("| " + " | ".join(cells) + " |")
    finally:
        model.crop = own
    return rows
