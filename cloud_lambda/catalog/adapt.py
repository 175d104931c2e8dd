"""``visual-search catalog adapt``: learn a projection head from a catalog's own images and apply it to its index.

The index keeps the model's vectors (``vectors.npy``); adaptation trains a head on views made from the
catalog images (:mod:`model.adapt`), rewrites the index through it and records in the manifest's
``adaptation`` section what the head is (hash, dimensions) and what it was trained on (the model id, the
training data hash, the settings, the before/after figures). The search checks the head against the manifest
at load and projects every incoming vector; the device keeps its model. Items indexed later are projected by
the same head without retraining (``catalog index`` carries the head over); re-run ``catalog adapt`` to learn
them too.

Needs the ``export`` extra (torch) where it runs; the search needs only numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud_lambda.catalog.layout import CatalogError, apply_head, read_manifest
from cloud_lambda.catalog.sources import open_source


@dataclass
class CatalogImages:
    ids: list[str]
    images: list[np.ndarray]
    missing: list[str]
    """Index ids without a readable image in the source (not trained on; still searchable through the head)."""


def catalog_images(index_dir: Path, source: str, metadata: Path | None) -> CatalogImages:
    """The index's items with their images from ``source``, matched the way ``catalog index`` names items."""
    from cloud_lambda.catalog import items as items_mod
    from model.image_rules import ImageRejected, decode

    ids: list[str] = json.loads((Path(index_dir) / "ids.json").read_text())
    rows = items_mod.read_item_rows(metadata) if metadata else []
    by_file, by_id = items_mod.match_rows(rows)
    src = open_source(source)
    key_of: dict[str, str] = {}
    for item in src.list():
        row = items_mod.row_for(item.key, by_file, by_id)
        key_of.setdefault(str(row["id"]) if row else items_mod.stem_of(item.key), item.key)
    found_ids, images, missing = [], [], []
    for item_id in ids:
        key = key_of.get(item_id)
        try:
            if key is None:
                raise ImageRejected("missing", "no image in the source")
            image, _ = decode(src.read(key))
        except (ImageRejected, OSError) as exc:
            missing.append(f"{item_id}: {exc}")
            continue
        found_ids.append(item_id)
        images.append(image)
    return CatalogImages(found_ids, images, missing)


def adapt_index(
    index_dir: Path,
    source: str,
    model: Path,
    *,
    metadata: Path | None = None,
    settings: Any = None,
    work_dir: Path | None = None,
    backend: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the head for ``index_dir``'s catalog and rewrite the index through it; → a summary (printed)."""
    from model.adapt.pipeline import AdaptSettings, Vectorizer, adapt
    from model.featurizer import Featurizer
    from model.retrieval.settings import SettingsMismatch, catalog_views_of, check_compatible, effective_crop

    manifest = read_manifest(index_dir)
    featurizer = Featurizer(model, backend=backend, threads=threads)
    try:
        check_compatible(featurizer.sidecar, manifest.model_id, manifest.retrieval)
    except SettingsMismatch as exc:
        raise CatalogError(f"--model {model}: {exc}") from exc
    found = catalog_images(index_dir, source, metadata)
    if len(found.ids) < 2:
        raise CatalogError(f"only {len(found.ids)} of the index's items have an image in {source}: nothing to learn")
    vectorize = Vectorizer(
        featurizer, effective_crop(featurizer.sidecar, None), views=catalog_views_of(manifest.retrieval)
    )
    work = Path(work_dir) if work_dir else Path(str(index_dir).rstrip("/") + ".adapt-work")
    adapted = adapt(found.ids, found.images, vectorize, settings or AdaptSettings(), work, progress)
    section = adapted.manifest_section()
    apply_head(index_dir, adapted.head, section)
    return {
        "index": str(index_dir),
        "model_id": adapted.model_id,
        "items_trained": adapted.items,
        "items_without_image": found.missing,
        "head": f"{adapted.head.in_dim}→{adapted.head.out_dim}",
        "head_sha256": adapted.head.sha256,
        "data_hash": adapted.data_hash,
        "seconds": round(adapted.seconds, 1),
        "before_after": adapted.before_after,
    }


def before_after_table(summary: dict[str, Any]) -> str:
    """The before/after figures as a markdown table (printed by the command)."""
    lines = [
        "| held-out views | queries | R@1 before | R@1 after | R@5 before | R@5 after |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["before_after"]:
        b, a = row["before"], row["after"]
        lines.append(
            f"| {row['views']} | {row['queries']} | {b['recall@1']:.3f} | {a['recall@1']:.3f}"
            f" | {b['recall@5']:.3f} | {a['recall@5']:.3f} |"
        )
    return "\n".join(lines)
