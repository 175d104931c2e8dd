"""Which seeds, source photos and backgrounds choices may look at, and which only the final figures see.

Every default is chosen on the **tuning** part; the **held-out** part is scored only for the reported table
(docs/match-quality.md), never while choosing. The split is by name (a hash, so adding a photo never moves
the others between parts) and by seed range; it is fixed here, in code, so nobody can move it quietly.

The catalog always holds every photo: held-out photos are distractors while tuning, tuning photos are
distractors in the final figures. Only the *queries* are split.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Part = Literal["tuning", "heldout"]
PARTS: tuple[Part, ...] = ("tuning", "heldout")

SEEDS: dict[Part, tuple[int, ...]] = {"tuning": (0, 1), "heldout": (9001, 9002)}
"""Seeds of the held-up views and of the camera views of each part."""


def part_of(name: str) -> Part:
    """The part a source photo or background belongs to: the low bit of the first byte of its name's SHA-1."""
    return "tuning" if hashlib.sha1(name.encode("utf-8")).digest()[0] % 2 == 0 else "heldout"


def names_in(names: list[str], part: Part) -> list[str]:
    return [name for name in names if part_of(name) == part]
