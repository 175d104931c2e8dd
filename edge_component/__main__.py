"""``python -m edge_component run|check-config``: the device entry point (the recipe's Run calls it).

The component zip holds the import closure of this module (see :mod:`edge_component.packaging.closure`),
so it must stay free of the laptop side: no ``simulator``, ``cloud_lambda`` or torch import anywhere below
it. ``visual-search edge ...`` on a laptop parses the same options through :func:`edge_component.cli.register`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge_component.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_component", description="The Edge Visual Search camera component."
    )
    register(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
