"""The ``visual-search`` hub: a typo gets the closest match, every (sub)command says what it does."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from model.hub import COMMANDS, build_parser


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model.hub", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_mistyped_option_is_named_with_the_closest_one() -> None:
    # Plain argparse said only "the following arguments are required: --model".
    result = cli("search-image", "photo.jpg", "--index", "idx", "--modle", "m.onnx")
    assert result.returncode == 2
    assert "unknown option --modle; did you mean --model?" in result.stderr
    assert "required" not in result.stderr


def test_a_mistyped_option_of_a_nested_subcommand_is_found_there() -> None:
    result = cli("stack", "up", "--index-dir", "idx", "--restrat")
    assert result.returncode == 2
    assert "visual-search stack up: error: unknown option --restrat; did you mean --restart?" in result.stderr


def test_an_option_with_nothing_close_is_still_named() -> None:
    result = cli("stack", "status", "--zzzz")
    assert result.returncode == 2 and "unknown option --zzzz" in result.stderr
    assert "did you mean" not in result.stderr


def test_a_mistyped_subcommand_gets_the_closest_one() -> None:
    result = cli("stak", "up")
    assert result.returncode == 2 and "did you mean 'stack'?" in result.stderr


def test_required_options_show_as_required_in_the_usage_line() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "VS_PHOTO_MODEL"}
    usage = cli("search-image", "--help", env=env).stdout
    assert " --model MODEL" in usage and "[--model MODEL]" not in usage


def _subparsers(parser: argparse.ArgumentParser, prog: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _subparsers(child, f"{prog} {name}")
    return found


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_has_a_description(command: str) -> None:
    parsers = _subparsers(build_parser([command]), "visual-search")
    assert len(parsers) > 2  # the command's own subcommands or options were registered
    missing = [prog for prog, parser in parsers if not parser.description]
    assert missing == []
