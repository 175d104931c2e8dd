"""Functions short enough to read at once: none over 60 lines in the project's code unless its docstring says
why (a line starting "Long because"). ``python -m tests.test_function_length`` lists every function over the
limit with its length, the reason it gives, or that it gives none.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "edge_component", "cloud_lambda", "simulator", "bench")
LIMIT = 60
REASON = "Long because"

WAITING: dict[str, str] = {}
"""Long functions whose split waits for other work on the same function to land (no reason to keep them long)."""


@dataclass(frozen=True)
class Long:
    where: str
    lines: int
    reason: str | None


def long_functions(root: Path = ROOT) -> list[Long]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            found += _long_in(ast.parse(path.read_text(encoding="utf-8")), rel, "")
    return found


def _long_in(node: ast.AST, rel: str, prefix: str) -> list[Long]:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            found += _long_in(child, rel, f"{prefix}{child.name}.")
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (child.end_lineno or child.lineno) - child.lineno + 1
            if lines > LIMIT:
                doc = ast.get_docstring(child) or ""
                reason = next((line.strip() for line in doc.splitlines() if line.strip().startswith(REASON)), None)
                found.append(Long(f"{rel}:{prefix}{child.name}", lines, reason))
            found += _long_in(child, rel, f"{prefix}{child.name}.")
    return found


def test_no_function_over_the_limit_without_a_reason() -> None:
    unexplained = [f"{f.where} ({f.lines} lines)" for f in long_functions() if not f.reason and f.where not in WAITING]
    assert not unexplained, f"split into named stages, or say why in a '{REASON} ...' docstring line: {unexplained}"


def test_the_waiting_list_holds_only_functions_still_too_long() -> None:
    still_long = {f.where for f in long_functions()}
    assert set(WAITING) <= still_long, f"split already, drop from WAITING: {sorted(set(WAITING) - still_long)}"


def test_the_check_sees_a_long_function_and_its_reason(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "m.py").write_text(
        f"def plain():\n{body}\n\nclass C:\n    def why(self):\n        '''{REASON} it is a table.'''\n"
        + body.replace("    ", "        ")
        + "\n"
    )
    assert long_functions(tmp_path) == [
        Long("model/m.py:plain", LIMIT + 1, None),
        Long("model/m.py:C.why", LIMIT + 2, f"{REASON} it is a table."),
    ]


if __name__ == "__main__":
    for f in sorted(long_functions(), key=lambda f: -f.lines):
        status = f.reason or (f"waiting: {WAITING[f.where]}" if f.where in WAITING else "NO REASON")
        print(f"{f.lines:4d}  {f.where}  — {status}")
