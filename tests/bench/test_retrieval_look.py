"""``python -m bench retrieval``'s last table times the device's look at its crop on the frames it says it does."""

from __future__ import annotations

from bench.retrieval import blank_look


def test_the_look_is_timed_on_a_kept_crop_and_on_a_blank_one() -> None:
    rows = blank_look(repeats=2)
    assert [(row[0], row[1]) for row in rows] == [
        ("textured (crop kept)", "crop"),
        ("plain wall (whole frame)", "whole"),
    ]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)  # milliseconds, measured
