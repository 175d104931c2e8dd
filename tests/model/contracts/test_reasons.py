"""Reason codes and the error base (``model.contracts.reasons``, ``model.contracts.errors``): every code raised
in product code is listed with its meaning; a rejection carries (reason, message); every exception class is
under the one base, and no two product classes share a name."""

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


NOT_ERRORS = {
    "EndOfStream": "control flow: a finite input has no more frames",
    "WorkerError": "model/mxnet/convert_worker.py runs in the MXNet environment, without the project",
}


def product_classes() -> dict[str, tuple[str, list[str]]]:
    """Top-level class name → (file, base names) in product code."""
    found: dict[str, tuple[str, list[str]]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                    found.setdefault(node.name, (str(path.relative_to(ROOT)), bases))
    return found


def test_every_exception_class_is_under_the_project_error_base() -> None:
    import builtins

    classes = product_classes()

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in seen:
            return False
        if isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), BaseException):
            return True
        return name in classes and any(is_exception(b, seen | {name}) for b in classes[name][1])

    def under_base(name: str) -> bool:
        return name == "VisualSearchError" or (name in classes and any(under_base(b) for b in classes[name][1]))

    exceptions = [name for name in classes if is_exception(name)]
    assert len(exceptions) > 30
    outside = [f"{classes[n][0]}: {n}" for n in exceptions if not under_base(n) and n not in NOT_ERRORS]
    assert not outside, outside


def test_public_class_names_are_unique_across_the_product() -> None:
    seen: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    seen.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: where for name, where in seen.items() if len(where) > 1}
