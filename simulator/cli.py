"""``visual-search``: one command, subcommands owned by each domain package.

Each domain module exposes ``register(subparsers)``; it is imported only when its subcommand runs, so a
device without torch or faiss can still run ``visual-search edge run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand → (module with register()/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "model": ("model.cli", "export, inspect and evaluate the featurizer"),
    "catalog": ("cloud_lambda.catalog.cli", "index a catalog of product images"),
    "edge": ("edge_component.cli", "run the camera component (the Greengrass recipe calls this)"),
    "simulate": ("simulator.simulate_cli", "the device loop on a laptop: webcam, video, folder or replay"),
    "stack": (
        "simulator.stack.cli",
        "start/stop the local stack: mosquitto, redis, rule bridge, API + web app",
    ),
    "search-image": ("cloud_lambda.search_image_cli", "search the catalog with a photo file"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visual-search", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name == wanted:
            module = importlib.import_module(module_name)
            module.register(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*args_list, "--help"])
        return 2
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
