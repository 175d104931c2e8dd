"""Code blocks and commands of the project's Markdown (README.md, docs/*.md), for the tests that keep them true."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELL_LANGS = ("bash", "sh", "console", "shell")
MARKERS = {"# needs AWS": "aws", "# needs a camera": "camera", "# takes minutes": "minutes"}
"""Visible end-of-line markers for commands no test can run here (README "Docs that stay true")."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    heading: str
    text: str


@dataclass(frozen=True)
class Command:
    """One shell command of a block: ``raw`` exactly as the doc shows it (continuation lines included)."""

    block: Block
    line: int
    raw: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.block.path.relative_to(REPO_ROOT)}:{self.line}"

    @property
    def text(self) -> str:
        """One line: backslash continuations joined."""
        return re.sub(r"\\\n\s*", " ", self.raw)

    def words(self) -> list[str]:
        """The words without the trailing comment; each ``$(...)`` becomes one placeholder word."""
        return split_words(self.text)


def split_words(text: str) -> list[str]:
    text = _without_substitutions(text)
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:
        return text.split("#", 1)[0].split()


def _without_substitutions(text: str) -> str:
    out, depth = [], 0
    index = 0
    while index < len(text):
        if text.startswith("$(", index):
            depth += 1
            if depth == 1:
                out.append("SUBSTITUTED")
            index += 2
            continue
        if depth and text[index] == "(":
            depth += 1
        elif depth and text[index] == ")":
            depth -= 1
        elif not depth:
            out.append(text[index])
        index += 1
    return "".join(out)


def blocks(path: Path) -> list[Block]:
    out, heading = [], ""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence:
            start, indent = index, fence.group(1)
            index += 1
            body = []
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
                index += 1
            out.append(Block(path, start + 1, fence.group(2), heading, "\n".join(body)))
        index += 1
    return out


def marker_of(text: str) -> str | None:
    return next((kind for tag, kind in MARKERS.items() if tag in text), None)


def commands(block: Block) -> list[Command]:
    """Shell commands of a shell block. A marker on a comment line before the first command covers the block."""
    if block.lang not in SHELL_LANGS:
        return []
    out: list[Command] = []
    block_marker: str | None = None
    pending: list[str] = []
    first = 0
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            if not out:
                block_marker = block_marker or marker_of(line)
            continue
        if not pending:
            first = number
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        raw = "\n".join(pending)
        pending = []
        out.append(Command(block, first, raw, marker_of(raw) or block_marker))
    return out


def all_commands() -> list[Command]:
    return [command for path in DOCS for block in blocks(path) for command in commands(block)]


def inline_spans(path: Path) -> list[tuple[int, str]]:
    """``code`` spans of the prose and tables (outside code blocks), with their line numbers."""
    spans: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.match(r"^\s*```", line):
            inside = not inside
            continue
        if not inside:
            spans += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return spans
