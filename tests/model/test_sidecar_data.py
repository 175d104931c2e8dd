"""Sidecar round trip and the packaged photos / camera views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data.photos import load_photos, load_view_pairs
from model.data.views import camera_view, camera_views
from model.sidecar import Sidecar, SidecarError, read_sidecar, write_sidecar


def test_sidecar_round_trip(exported_models: dict[str, Path], tmp_path: Path) -> None:
    original = read_sidecar(exported_models["int8"])
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(exported_models["int8"].read_bytes())
    write_sidecar(copy, original)
    again = read_sidecar(copy)
    assert again == original
    assert Sidecar.model_validate_json(again.model_dump_json()) == original
    assert again.parity and again.parity[0].nn_agreement is not None


def test_broken_sidecar_names_the_key(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "t.onnx"
    model.write_bytes(tiny_model.read_bytes())
    (tmp_path / "t.json").write_text('{"model_id": "x"}')
    with pytest.raises(SidecarError, match="key 'backbone'"):
        read_sidecar(model)
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(SidecarError, match="not readable JSON"):
        read_sidecar(model)


def test_photos_are_real_bgr_images() -> None:
    photos = load_photos()
    names = [n for n, _ in photos]
    assert len(photos) >= 30 and len(set(names)) == len(names)
    assert {"skimage:chelsea", "skimage:coffee", "sklearn:china"} <= set(names)
    for _, image in photos:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert len(load_view_pairs()) >= 8


def test_camera_views_are_deterministic_and_differ() -> None:
    image = dict(load_photos())["skimage:astronaut"]
    a = camera_views(image, 3, seed=5)
    b = camera_views(image, 3, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])
    untouched = camera_view(image, np.random.default_rng(0), strength=0.0)
    assert np.array_equal(untouched, image)
    with pytest.raises(ValueError, match="BGR uint8"):
        camera_view(image.astype(np.float32), np.random.default_rng(0))
