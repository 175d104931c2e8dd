"""Every link in README.md and docs/*.md that is not a web address points at a file inside this repository."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT
from tests.docs.markdown import DOCS

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_resolve_inside_the_repository() -> None:
    problems = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # https://..., mailto:, an anchor on the same page
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(REPO_ROOT) or not resolved.exists():
                problems.append(f"{path.relative_to(REPO_ROOT)}: ({target})")
    assert problems == []


# A repository path written as code: starts at one of the project's own folders, ends in a source extension.
CODE_PATH = re.compile(
    r"`((?:model|edge_component|cloud_lambda|simulator|tests|bench|recipes|requirements|docs)/[\w./-]+"
    r"\.(?:py|md|yaml|yml|json|txt|sh|toml|js|html|css))`"
)


def test_repository_paths_written_as_code_exist() -> None:
    """`model/contracts/wire.py` in a doc names a file that is there (a module moved leaves no stale path)."""
    problems = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in DOCS
        for name in CODE_PATH.findall(path.read_text())
        if not (REPO_ROOT / name).exists()
    ]
    assert problems == []
