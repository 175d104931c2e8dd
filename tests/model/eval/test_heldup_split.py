"""The held-up evaluation cannot be tuned to one assumption: two placements, a recorded split of photos,
backgrounds and seeds, and training views that are not the evaluation's views."""

from __future__ import annotations

import numpy as np
import pytest

from model.adapt.views import training_view
from model.data.photos import load_photos
from model.eval.heldup.split import SEEDS, names_in, part_of
from model.eval.heldup.views import HeldUpParams, background_names, held_up_view, placement_params


def _photo(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def test_the_split_is_fixed_disjoint_and_large_enough() -> None:
    names = [name for name, _ in load_photos()]
    tuning, heldout = names_in(names, "tuning"), names_in(names, "heldout")
    assert len(names) >= 40 and len(tuning) >= 15 and len(heldout) >= 15
    assert not set(tuning) & set(heldout) and set(tuning) | set(heldout) == set(names)
    assert part_of("skimage:astronaut") == part_of("skimage:astronaut")  # a name's part never moves
    assert not set(SEEDS["tuning"]) & set(SEEDS["heldout"])
    backgrounds = background_names()
    assert names_in(backgrounds, "tuning") and names_in(backgrounds, "heldout")
    assert not set(backgrounds) & set(names)  # a query never holds a second catalog item


def _object_box(frame: np.ndarray, background: np.ndarray) -> tuple[float, float, float, float]:
    """Where the frame differs from a flat background: the pasted object (and hand)."""
    diff = np.abs(frame.astype(int) - background.astype(int)).sum(axis=2) > 60
    ys, xs = np.nonzero(diff)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_anywhere_spreads_objects_over_the_frame_and_centred_keeps_them_near_the_middle() -> None:
    flat = np.full((480, 640, 3), 128, np.uint8)
    item = _photo(1, 300, 400)
    boxes: dict[str, list[tuple[float, float, float, float]]] = {"centred": [], "anywhere": []}
    for placement in boxes:
        params = placement_params(placement)  # type: ignore[arg-type]
        rng = np.random.default_rng(5)
        for _ in range(30):
            frame = held_up_view(item, [flat], rng, HeldUpParams(**{**params.__dict__, "blur_sigma": 0.0}))
            boxes[placement].append(_object_box(frame, flat))
    offsets = {k: [abs((b[0] + b[2]) / 2 - 320) for b in v] for k, v in boxes.items()}
    assert max(offsets["centred"]) < 0.22 * 480
    assert max(offsets["anywhere"]) > max(offsets["centred"])
    # anywhere: objects reach the frame's edges (the box fits inside, so at most touching them)
    assert min(b[0] for b in boxes["anywhere"]) < 16 and max(b[2] for b in boxes["anywhere"]) > 640 - 16
    assert min(b[1] for b in boxes["anywhere"]) < 16 and max(b[3] for b in boxes["anywhere"]) > 480 - 16
    assert placement_params("anywhere").object_frac == (0.45, 0.80)


def test_training_views_are_deterministic_and_use_no_evaluation_background() -> None:
    item, others = _photo(2, 200, 260), [_photo(3), _photo(4)]
    first = training_view(item, others, np.random.default_rng(9))
    again = training_view(item, others, np.random.default_rng(9))
    assert first.shape == (320, 320, 3) and np.array_equal(first, again)
    assert not np.array_equal(first, training_view(item, others, np.random.default_rng(10)))


def test_rows_are_chosen_by_name_in_table_order_and_an_unknown_name_is_refused() -> None:
    from model.eval.heldup.run import ROWS, select

    assert [o.row for o in select(["head-regions", "baseline"])] == ["baseline", "head-regions"]
    assert len(select(None)) == len(ROWS) == len(set(ROWS))
    with pytest.raises(ValueError, match="unknown nope"):
        select(["baseline", "nope"])


class _TwoItemModel:
    """Stands in for an exported model in the scoring arithmetic: fixed unit vectors, one region per query."""

    def __init__(self, queries: np.ndarray) -> None:
        self._queries = queries

    def catalog(self, images: object, views: object) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(2, dtype=np.float32), np.array([0, 1])

    def queries(self, frames: object) -> np.ndarray:
        return self._queries


def test_misses_name_the_photo_its_seed_and_view_and_what_came_first() -> None:
    from model.eval.heldup.run import misses
    from model.eval.heldup.sets import PartSets, QuerySet
    from model.retrieval.catalog_views import SINGLE_VIEW

    # heldout seeds in order, 2 views of item 0 then 1 of item 1 per seed; the second seed's view 1 of item 0
    # points at item 1
    items = np.array([0, 0, 1, 0, 0, 1])
    vectors = np.eye(2, dtype=np.float32)[[0, 0, 1, 0, 1, 1]][:, None, :]
    data = PartSets("heldout", ["a", "b"], [], {"camera": QuerySet([], items)})
    got = misses(data, _TwoItemModel(vectors), SINGLE_VIEW, None)  # type: ignore[arg-type]
    assert got == [f"a (seed {SEEDS['heldout'][1]}, view 1) → b"]


def test_more_camera_seeds_only_on_the_tuning_part_and_misses_name_them() -> None:
    from model.eval.heldup.run import misses
    from model.eval.heldup.sets import PartSets, QuerySet, camera_seeds_of
    from model.retrieval.catalog_views import SINGLE_VIEW

    assert camera_seeds_of("tuning", None) == SEEDS["tuning"]
    assert camera_seeds_of("heldout", None) == SEEDS["heldout"]
    more = camera_seeds_of("tuning", 4)
    assert more[: len(SEEDS["tuning"])] == SEEDS["tuning"] and len(more) == 4
    assert not set(more) & set(SEEDS["heldout"])
    with pytest.raises(ValueError, match="tuning part only"):
        camera_seeds_of("heldout", 4)
    with pytest.raises(ValueError, match="at least"):
        camera_seeds_of("tuning", 1)

    # 4 tuning camera seeds, one view of each item per seed; the last seed's view of item 0 points at item 1
    items = np.array([0, 1] * 4)
    vectors = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1, 1, 1]][:, None, :]
    data = PartSets("tuning", ["a", "b"], [], {"camera": QuerySet([], items)}, more)
    got = misses(data, _TwoItemModel(vectors), SINGLE_VIEW, None)  # type: ignore[arg-type]
    assert got == [f"a (seed {more[3]}, view 0) → b"]


def test_aside_holds_the_object_beside_the_device_crop_in_front_of_a_plain_wall() -> None:
    from model.eval.heldup.views import ASIDE_INSIDE
    from model.retrieval.frame_crop import edge_fraction

    item = _photo(1, 300, 400)
    params = placement_params("aside")
    params = HeldUpParams(**{**params.__dict__, "blur_sigma": 0.0, "occluder_frac": (0.001, 0.001)})
    rng = np.random.default_rng(11)
    crop_left, crop_right = 320 - 0.3 * 480, 320 + 0.3 * 480
    sides = set()
    for _ in range(20):
        frame = held_up_view(item, [], rng, params)  # a wall: the room photos are not used
        mask = np.abs(frame.astype(int) - np.median(frame, axis=(0, 1)).astype(int)).sum(axis=2) > 60
        xs = np.nonzero(mask.any(axis=0))[0]
        left, right = xs.min(), xs.max()
        inside = max(0.0, min(right, crop_right) - max(left, crop_left))
        # at most a third inside the crop, or as far out as the frame allows (an object too wide for both)
        assert inside <= ASIDE_INSIDE * (right - left) + 8 or left <= 2 or right >= 640 - 3
        side = "left" if (left + right) / 2 < 320 else "right"
        sides.add(side)
        across = frame[:, right + 24 :] if side == "left" else frame[:, : max(left - 24, 0)]
        if across.shape[1] >= 64:
            assert edge_fraction(across) < 0.05  # beyond the object: plain wall
    assert sides == {"left", "right"}
    assert params.object_frac == (0.35, 0.55)


def test_a_blank_sweep_takes_fractions_and_a_bad_one_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from model.eval.heldup.blank_sweep import parse_thresholds
    from model.hub import main

    assert parse_thresholds("0, 0.1,0.15") == [0.0, 0.1, 0.15]
    for bad, message in (("0.1,x", "'x' is not a number"), ("1.5", "1.5 is not in"), (",", "at least one")):
        with pytest.raises(ValueError, match=message):
            parse_thresholds(bad)
    code = main(["model", "eval", "--heldup", "--blank-sweep", "0.1,lots", "--models", str(tmp_path)])
    assert code == 2 and "--blank-sweep: 'lots' is not a number" in capsys.readouterr().err
