"""Fine-tuning inputs: readers, catalog-rule validation, split, and the Fashion-MNIST materializer."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.finetune.augment import CameraAugment
from model.finetune.data.base import DatasetError, Sample, read_source
from model.finetune.data.split import data_hash, given_split, stratified_split
from model.finetune.data.validate import validate_images
from model.finetune.fashion_mnist import materialize, read_idx


def _image(kind: int, seed: int, size: int = 72) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.integers(150, 255, 3), np.uint8)
    colour = tuple(int(c) for c in rng.integers(0, 120, 3))
    c = size // 2 + int(rng.integers(-6, 7))
    if kind == 0:
        cv2.circle(img, (c, c), size // 4, colour, -1)
    elif kind == 1:
        cv2.rectangle(img, (c - size // 4, c - size // 4), (c + size // 4, c + size // 4), colour, -1)
    else:
        pts = np.array([[c, c - size // 4], [c - size // 4, c + size // 4], [c + size // 4, c + size // 4]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    return img


def make_class_folder(
    root: Path, per_class: int = 6, classes: tuple[str, ...] = ("circle", "square", "triangle")
) -> Path:
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = ".png" if i % 2 else ".jpg"
            cv2.imwrite(str(root / name / f"{i:02d}{suffix}"), _image(k, 100 * k + i))
    return root


def test_folder_reader_lists_classes_and_skips_non_images(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    (root / "circle" / "notes.txt").write_text("not an image")
    result = read_source(root)
    assert result.classes == ["circle", "square", "triangle"]
    assert len(result.samples) == 9
    assert [p.where for p in result.problems] == [str(root / "circle" / "notes.txt")]


def test_empty_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=2)
    (root / "hat").mkdir()
    with pytest.raises(DatasetError, match=r"'hat'.*hold no images"):
        read_source(root)


def test_manifest_reader_skips_missing_file_and_uses_class_names(tmp_path: Path) -> None:
    images = make_class_folder(tmp_path / "imgs", per_class=2)
    lines = [
        {"source-ref": "s3://bucket/circle/00.jpg", "label": 0, "label-metadata": {"class-name": "circle"}},
        {"source-ref": "square/01.png", "label": 1, "label-metadata": {"class-name": "square"}},
        {"source-ref": "s3://bucket/square/missing.jpg", "label": 1},
        {"source-ref": "circle/01.png"},
    ]
    manifest = tmp_path / "train.manifest"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    result = read_source(manifest, image_root=images)
    assert [(s.path.name, s.label) for s in result.samples] == [("00.jpg", "circle"), ("01.png", "square")]
    reasons = {p.where.rsplit(":", 1)[1]: p.reason for p in result.problems}
    assert "missing.jpg" in reasons["3"] and "does not exist" in reasons["3"]
    assert "label attribute" in reasons["4"]
    assert "not valid JSON" in reasons["5"]


def test_lst_reader(tmp_path: Path) -> None:
    make_class_folder(tmp_path, per_class=2)
    lst = tmp_path / "train.lst"
    lst.write_text(
        "0\t0.000000\tcircle/00.jpg\n1\t1.000000\tsquare/00.jpg\n2\tshoe\tsquare/01.png\n"
        "3\t1.000000\tsquare/gone.jpg\n4\t1\t0\tsquare/01.png\n"
    )
    result = read_source(lst)
    assert [(s.path.name, s.label) for s in result.samples] == [("00.jpg", "0"), ("00.jpg", "1")]
    reasons = [p.reason for p in result.problems]
    assert "not a number" in reasons[0] and "does not exist" in reasons[1] and "3 fields" in reasons[2]


def test_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    odd = tmp_path / "data.csv"
    odd.write_text("a,b\n")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        read_source(odd)
    with pytest.raises(DatasetError, match="does not exist"):
        read_source(tmp_path / "nowhere")


def test_catalog_rules_skip_corrupt_small_and_fake_images(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    good = (root / "circle" / "00.jpg").read_bytes()
    (root / "circle" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "square" / "garbage.png").write_bytes(b"this is not a picture at all" * 10)
    cv2.imwrite(str(root / "triangle" / "tiny.png"), _image(2, 7, size=32))
    checked = validate_images(read_source(root), progress=False)
    skipped = {Path(p.where).name: p.reason for p in checked.problems}
    assert set(skipped) == {"truncated.jpg", "garbage.png", "tiny.png"}
    assert skipped["truncated.jpg"].startswith("truncated")
    assert skipped["garbage.png"].startswith("not_image")
    assert skipped["tiny.png"].startswith("too_small")
    assert len(checked.samples) == 9


def test_stratified_split_is_seeded_and_per_class(tmp_path: Path) -> None:
    samples = [Sample(tmp_path / f"{c}{i}.png", c) for c in "abc" for i in range(10)]
    first = stratified_split(samples, 0.3, seed=1)
    assert stratified_split(samples, 0.3, seed=1) == first
    assert stratified_split(samples, 0.3, seed=2).val != first.val
    for c in "abc":
        assert sum(s.label == c for s in first.val) == 3
        assert sum(s.label == c for s in first.train) == 7
    assert not {s.path for s in first.train} & {s.path for s in first.val}


def test_split_refuses_unusable_classes(tmp_path: Path) -> None:
    samples = [Sample(tmp_path / f"a{i}.png", "a") for i in range(4)] + [Sample(tmp_path / "b.png", "b")]
    with pytest.raises(DatasetError, match=r"\['b'\] have fewer than 2"):
        stratified_split(samples, 0.3, seed=0)
    with pytest.raises(DatasetError, match=r"validation classes \['z'\]"):
        given_split(samples, [Sample(tmp_path / "z.png", "z")])


def test_data_hash_follows_content_not_location(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "one", per_class=3)
    split = stratified_split(read_source(root).samples, 0.3, 0)
    moved = make_class_folder(tmp_path / "two", per_class=3)
    assert data_hash(stratified_split(read_source(moved).samples, 0.3, 0)) == data_hash(split)
    cv2.imwrite(str(moved / "circle" / "01.png"), _image(1, 999))
    assert data_hash(stratified_split(read_source(moved).samples, 0.3, 0)) != data_hash(split)


def test_camera_augment_is_deterministic_and_keeps_the_contract() -> None:
    image = _image(0, 1, size=120)
    aug = CameraAugment()
    a = aug(image, 64, np.random.default_rng(5))
    b = aug(image, 64, np.random.default_rng(5))
    c = aug(image, 64, np.random.default_rng(6))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_materializer_writes_class_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    assert read_idx(tmp_path / "train-labels-idx1-ubyte.gz").tolist()[:3] == [0, 1, 2]
    out = materialize(tmp_path / "fm", train_per_class=2, holdout_per_class=1, size=64, root=tmp_path)
    train = read_source(out["train"])
    assert len(train.classes) == 10 and len(train.samples) == 20
    first = cv2.imread(str(train.samples[0].path))
    assert first is not None and first.shape == (64, 64, 3)
    assert len(read_source(out["holdout"]).samples) == 10
    with pytest.raises(ValueError, match="64 px"):
        materialize(tmp_path / "x", 1, 1, size=28, root=tmp_path)


def test_int8_calibration_comes_from_the_users_own_training_images(tmp_path: Path) -> None:
    from model.finetune.pipeline import calibration_frames
    from model.prepare import prepare_frame

    samples = []
    for i, colour in enumerate(((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        path = tmp_path / f"item-{i}.png"
        cv2.imwrite(str(path), np.full((80, 96, 3), colour, np.uint8))
        samples.append(Sample(path, f"class-{i}"))
    frames = calibration_frames(samples, 32, seed=0, count=7)
    assert frames.shape == (7, 32, 32, 3) and frames.dtype == np.uint8
    own = {prepare_frame(cv2.imread(str(s.path)), 32).tobytes() for s in samples}
    assert {f.tobytes() for f in frames[:3]} == own  # every image as-is first, then views of them

    def colour(frame: np.ndarray) -> int:
        return int(np.argmax(frame.reshape(-1, 3).mean(axis=0)))

    # Then camera-like views of the same images, in the same order: each keeps its image's colour.
    assert [colour(f) for f in frames[3:]] == [colour(frames[i % 3]) for i in range(3, 7)]
    with pytest.raises(DatasetError, match="calibration"):
        calibration_frames([Sample(tmp_path / "missing.png", "x")], 32, seed=0)
