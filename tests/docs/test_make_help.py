"""`make help` lists every target of the Makefile and says how `visual-search` gets on PATH."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

TARGET = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):(?!=)", re.MULTILINE)


def test_make_help_lists_every_target() -> None:
    targets = set(TARGET.findall((REPO_ROOT / "Makefile").read_text())) - {"$(SETUP_STAMP)"}
    assert {"demo", "test", "help", "bench"} <= targets
    shown = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    listed = set(re.findall(r"^  make (\S+)", shown.stdout, re.MULTILINE))
    assert listed == targets
    assert "source .venv/bin/activate" in shown.stdout and ".venv/bin/visual-search" in shown.stdout
