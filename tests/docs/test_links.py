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
