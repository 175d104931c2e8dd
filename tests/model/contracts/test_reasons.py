"""Reason codes and the error base (``model.contracts.reasons``, ``model.contracts.errors``): every code raised
in product code is listed with its meaning; a rejection carries (reason, message)."""

from __future__ import annotations

import ast
from pathlib import Path

from model.contracts.errors import Rejected, VisualSearchError
from model.contracts.reasons import REASONS

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("model", "edge_component", "cloud_lambda", "simulator")


def raised_reasons() -> dict[str, list[str]]:
    """reason code → where product code raises ``Rejected("<code>", ...)`` with it."""
    found: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Rejected"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found.setdefault(str(node.args[0].value), []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_reason_code_raised_is_listed_with_its_meaning() -> None:
    raised = raised_reasons()
    assert len(raised) > 15  # the scan sees the codec, the status parser, the topics and the search
    unlisted = {code: where for code, where in raised.items() if code not in REASONS}
    assert not unlisted, f"add these codes to model/contracts/reasons.py: {unlisted}"


def test_a_rejection_is_a_project_error_and_a_value_error_with_its_reason() -> None:
    exc = Rejected("oversize", "payload is 200000 bytes")
    assert isinstance(exc, VisualSearchError) and isinstance(exc, ValueError)
    assert (exc.reason, str(exc)) == ("oversize", "payload is 200000 bytes")
