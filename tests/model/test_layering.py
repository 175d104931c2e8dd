"""The layering (README: repository layout), as rules on the source:

- ``model`` imports nothing of the other packages (directly or via importlib); only the command hub
  (``model/hub.py``) names them, as strings it imports by name when that subcommand runs;
- the device (the import closure of ``python -m edge_component``, what the component zip ships) holds no
  ``simulator``, ``cloud_lambda``, hub or evaluation code, and no ``edge_component`` module imports those;
- the cloud (``cloud_lambda``: both Lambda handlers and the Batch CLI) imports neither ``simulator`` nor
  ``edge_component`` (the cloud image ships neither, ``tests/cloud_lambda/test_image.py``);
- each contract (wire, status, topics, size limits, reason codes, the error base) is defined once, in
  ``model/contracts``, and every side imports it from there: no other product module defines a name it defines,
  and no module imports one through another module;
- product code imports no evaluation code (``model.eval`` is only reached from the ``model eval`` command),
  and none of ``bench`` or ``tests``.
"""

from __future__ import annotations

import ast
import re
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


def imports_by_file(package: str) -> dict[str, list[str]]:
    """``package/...py`` (relative path) → the modules it imports anywhere (top level or inside functions)."""
    return {
        path.relative_to(ROOT).as_posix(): imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{rel}: {name}"
        for rel, names in imports_by_file(package).items()
        for name in names
        if name.split(".")[0] in forbidden
    ]


def test_model_imports_nothing_of_the_other_packages() -> None:
    offenders = []
    files = sorted(MODEL.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if name.split(".")[0] in OTHERS:
                offenders.append(f"{path.relative_to(MODEL.parent)}: {name}")
    assert not offenders, offenders


HUB = "model/hub.py"
_MODULE_PATH = re.compile(r"^(cloud_lambda|edge_component|simulator|bench|tests)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def test_only_the_hub_names_other_packages_and_only_the_modules_that_own_a_subcommand() -> None:
    """A module path in a string is an import waiting to happen (importlib, plugin registries): in ``model`` only
    the hub may hold one, and each of its entries must be a real module with ``register``."""
    from model.hub import COMMANDS

    named = []
    for path in sorted(MODEL.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_PATH.match(node.value):
                named.append((rel, node.value))
    assert {rel for rel, _ in named} == {HUB}, named
    assert {value for _, value in named} == {
        module for module, _ in COMMANDS.values() if module.split(".")[0] != "model"
    }
    for module, _ in COMMANDS.values():
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
        assert "def register(" in (ROOT / (module.replace(".", "/") + ".py")).read_text(), module


def test_the_device_ships_and_imports_no_laptop_cloud_hub_or_evaluation_code() -> None:
    from edge_component.packaging.build import device_code

    shipped = device_code(ROOT)
    assert "edge_component/__main__.py" in shipped and "model/contracts/wire.py" in shipped
    foreign = [f for f in shipped if f.startswith(("simulator/", "cloud_lambda/", "model/eval/")) or f == HUB]
    assert not foreign, foreign
    assert not offenders("edge_component", ("simulator", "cloud_lambda", "bench", "tests"))


def test_the_cloud_imports_neither_the_device_nor_the_laptop_package() -> None:
    found = imports_by_file("cloud_lambda")
    assert "cloud_lambda/search/handler.py" in found and "cloud_lambda/catalog/cli.py" in found
    assert not offenders("cloud_lambda", ("simulator", "edge_component", "bench", "tests"))


CONTRACTS = ROOT / "model" / "contracts"
GENERIC = {"decode", "encode", "check", "loads", "topic"}
"""Contract function names too generic to mean a copy (an image decoder is not the wire decoder)."""
SAME_NAME_KEPT = {
    ("model/image_rules.py", "REASONS"): "the image upload rules' own codes, a different set (reasons.py names it)",
    ("simulator/stack/bridge.py", "KINDS"): "the kinds the rule bridge forwards: a subset of the topics' KINDS",
}


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def test_each_contract_is_defined_once_in_model_contracts() -> None:
    """A limit, topic rule, message parser or error class of ``model/contracts`` defined again elsewhere is a copy
    waiting to drift (MAX_STATUS_BYTES once had three)."""
    contract = {
        name
        for path in CONTRACTS.glob("*.py")
        for name in top_level_names(path)
        if not name.startswith("_") and name not in GENERIC
    }
    assert {"MAX_STATUS_BYTES", "parse_status", "parse_topic", "FeatureMessage", "VisualSearchError"} <= contract
    copies = [
        (rel, name)
        for package in ("model", "edge_component", "cloud_lambda", "simulator")
        for path in sorted((ROOT / package).rglob("*.py"))
        if not (rel := path.relative_to(ROOT).as_posix()).startswith("model/contracts/")
        for name in sorted(top_level_names(path) & contract)
        if (rel, name) not in SAME_NAME_KEPT
    ]
    assert not copies, copies
    # ... and imported from there, never through another module that re-exports it.
    detours = [
        (rel, f"from {node.module} import {alias.name}")
        for package in ("model", "edge_component", "cloud_lambda", "simulator", "bench", "tests")
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("model.contracts")
        for alias in node.names
        if alias.name in contract and (rel := path.relative_to(ROOT).as_posix())
    ]
    assert not detours, detours


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


def test_fine_tuning_checks_images_with_the_catalog_rules() -> None:
    from model import image_rules
    from model.finetune.data.validate import catalog_rules

    assert catalog_rules() is image_rules.decode
