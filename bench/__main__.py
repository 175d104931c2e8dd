"""``python -m bench [SECTION ...]``: run benchmark sections (default: all) and print their tables.

Each section is a module ``bench/<name>.py`` with ``run(quick: bool) -> None``. Sections compare
alternatives as ratios measured in the same run, because these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time

SECTIONS = ["featurizer", "edge_loop", "search", "retrieval", "stack"]
BY_NAME_ONLY = ["index_compact", "capacity", "cost", "region_search"]
"""Minutes to hours each (index_compact, capacity, region_search) or needing capacity's output (cost)."""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        default=SECTIONS,
        help=f"any of {', '.join(SECTIONS)} (the default: all of them), or by name only {', '.join(BY_NAME_ONLY)}",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes (smoke run)")
    args = parser.parse_args()
    print(
        f"# make bench — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    for name in args.sections:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"\n## {name}: not written yet")
                continue
            raise
        started = time.perf_counter()
        module.run(quick=args.quick)
        print(f"({name}: {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
