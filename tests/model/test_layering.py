"""The layering (README: repository layout): ``model`` imports nothing of the other packages (directly or via importlib), and the
product path imports no evaluation code (``model.eval`` is only reached from the ``model eval`` command)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "model"
OTHERS = ("cloud_lambda", "edge_component", "simulator", "bench", "tests")


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
    return names


def test_model_imports_nothing_of_the_other_packages() -> None:
    offenders = []
    files = sorted(MODEL.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if name.split(".")[0] in OTHERS:
                offenders.append(f"{path.relative_to(MODEL.parent)}: {name}")
    assert not offenders, offenders


PRODUCT = ("cloud_lambda", "edge_component", "model")
EVAL_ENTRY = {"model/cli.py"}
"""The one product file that may reach the evaluation: the ``model eval`` sub-command (imported lazily)."""


def test_product_code_imports_no_evaluation_code() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("model/eval/") or rel in EVAL_ENTRY:
                continue
            for name in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if name == "model.eval" or name.startswith("model.eval."):
                    offenders.append(f"{rel}: {name}")
    assert not offenders, offenders


def test_catalog_validation_is_the_model_rules() -> None:
    from cloud_lambda.catalog import validate
    from model import image_rules
    from model.finetune.data.validate import catalog_rules

    assert validate.decode is image_rules.decode is catalog_rules()
    assert validate.ImageRejected is image_rules.ImageRejected
    assert set(validate.__all__) <= set(dir(image_rules))
