"""``visual-search``: one command, subcommands owned by each domain package.

The hub only maps a subcommand's name to the module that owns it. Each owning module exposes
``register(parser)`` and is imported only when its subcommand runs, so a machine that has one package runs its
commands without the others: the cloud image (which ships ``model`` and ``cloud_lambda`` only) runs
``visual-search catalog ...``, a device without torch or faiss runs ``visual-search edge run``.

Why in ``model/``: the console script must be importable on every install, and ``model`` is the one package
every install has. The owners are named here as strings and imported by name when asked for, so ``model``
still imports none of the other packages (``tests/model/test_layering.py`` holds the hub to exactly that).
Each package's own entry point is the same hub cut to that package's commands: ``python -m cloud_lambda``
(catalog, search-image), ``python -m simulator`` (simulate, stack); the device's is ``python -m edge_component``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

# subcommand → (owning module with register(), one-line help); the module's top package owns the subcommand.
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

_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<choices>.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse that answers a typo with the closest match: ``--modle`` → "did you mean --model?".

    Plain argparse reports a mistyped option only as a consequence ("the following arguments are required:
    --model"), or at the top level where the subcommand's options are unknown; this parser looks at what
    was typed, finds the innermost subcommand, and names the unknown option with its nearest known one.
    """

    _typed: list[str]

    def parse_known_args(  # type: ignore[override]  # one signature for argparse's three overloads
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> Any:
        self._typed = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        parser = self._innermost(getattr(self, "_typed", []))
        hints = parser._unknown_options(getattr(self, "_typed", []))
        if hints:
            parser.print_usage(sys.stderr)
            parser.exit(2, f"{parser.prog}: error: {'; '.join(hints)}\n")
        choice = _INVALID_CHOICE.search(message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group("choices"))
            close = difflib.get_close_matches(choice.group("given"), options, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)

    def _innermost(self, typed: list[str]) -> Parser:
        """The subcommand parser the typed words lead to (self when there is none)."""
        parser: Parser = self
        for word in typed:
            if word.startswith("-"):
                continue
            nested = next(
                (
                    a.choices[word]
                    for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction) and word in a.choices
                ),
                None,
            )
            if nested is not None:
                parser = nested
        return parser

    def _unknown_options(self, typed: list[str]) -> list[str]:
        known = [option for action in self._actions for option in action.option_strings]
        hints = []
        for word in typed:
            if word == "--":
                break
            name = word.split("=", 1)[0]
            if not name.startswith("--") or name in known or any(k.startswith(name) for k in known):
                continue  # values, short options, and argparse's accepted abbreviations
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hints.append(f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else ""))
        return hints


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's --help starts with what it does: its one-line help when it has no description."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: str(choice.help or "") for choice in action._choices_actions}
        for name, child in action.choices.items():
            text = helps.get(name, "")
            if not child.description and text:
                child.description = text[:1].upper() + text[1:] + "."
            _describe_subcommands(child)


def commands_of(package: str | None) -> dict[str, tuple[str, str]]:
    """The subcommands ``package`` owns (all of them for None)."""
    return {name: entry for name, entry in COMMANDS.items() if package in (None, entry[0].split(".")[0])}


def build_parser(argv: Sequence[str], package: str | None = None, prog: str = "visual-search") -> Parser:
    """The parser for ``argv``: only the subcommand ``argv`` names is imported and registered."""
    parser = Parser(prog=prog, description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in commands_of(package).items():
        child = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        if name == wanted:
            importlib.import_module(module_name).register(child)
    _describe_subcommands(parser)
    return parser


def main(argv: Sequence[str] | None = None, package: str | None = None, prog: str = "visual-search") -> int:
    """Run one subcommand; ``package`` cuts the hub to that package's commands (its ``python -m`` entry point)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list, package, prog)
    args = parser.parse_args(args_list)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*args_list, "--help"])
        return 2
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
