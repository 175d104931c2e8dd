"""Fixtures of the simulator/local-stack tests: a tiny catalog indexed with the tiny model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.layout import write_catalog
from cloud_lambda.metadata.base import ItemRecord
from model.featurizer import Featurizer

HOSTILE_TITLE = "<script>alert('x')</script> O'Brien's \"mug\" & <b>co</b>"


@dataclass
class TinyCatalog:
    index_dir: Path
    images_dir: Path
    model: Path
    model_id: str
    ids: list[str]
    titles: dict[str, str]
    images: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray]


def _pattern(seed: int) -> np.ndarray:
    """A distinct, blocky colour image: the tiny model averages 4×4 blocks, so fine detail would be lost."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(blocks, (256, 256), interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="session")
def tiny_catalog(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyCatalog:
    root = tmp_path_factory.mktemp("tiny-catalog")
    images_dir = root / "images"
    images_dir.mkdir()
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1, warmup=0)
    titles = {"item-a": "Red mug", "item-b": HOSTILE_TITLE, "item-c": "Chelsea's cat bed", "item-d": "Plain box"}
    images, vectors, records = {}, {}, []
    for n, (ident, title) in enumerate(titles.items()):
        image = _pattern(n)
        cv2.imwrite(str(images_dir / f"{ident}.png"), image)
        images[ident] = image
        vectors[ident] = featurizer.featurize_frame(image)
        records.append(
            ItemRecord(id=ident, model_id=featurizer.model_id, title=title, image_url=f"/catalog/{ident}.png", extra={})
        )
    ids = list(titles)
    write_catalog(
        root / "index",
        model_id=featurizer.model_id,
        dim=featurizer.dim,
        input_size=featurizer.input_size,
        ids=ids,
        vectors=np.stack([vectors[i] for i in ids]),
        records=records,
        index_kind="exact",
        index_params={},
        summary={"count": len(ids)},
        report_lines=[],
    )
    (root / "items.json").write_text(json.dumps(titles))
    return TinyCatalog(root / "index", images_dir, tiny_model, featurizer.model_id, ids, titles, images, vectors)
