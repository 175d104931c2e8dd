"""The import closure of the device entry point: which project files the component zip must hold.

The zip is computed, not listed by hand: starting from the entry modules, every project module reached by
an ``import`` / ``from ... import`` statement (at module level or inside a function: lazy imports run later,
on the device) and every string constant that names a project module (plugin registries such as
``model.runtime.base._PLUGIN_MODULES`` load their modules with ``importlib.import_module(name)``), every module
of a package named in ``load_plugins("pkg")`` (:mod:`model.plugins` imports them all), plus the
``__init__.py`` of every package on the way, because Python imports a module's parent packages first.
Imports under ``if TYPE_CHECKING:`` never run and are skipped.

Read from the source with :mod:`ast`, so nothing is imported here: the build sees lazy imports that a
test run would only reach on some branch, and it runs without the device's third-party packages.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from model.contracts.errors import VisualSearchError

PROJECT_PACKAGES = ("edge_component", "model", "cloud_lambda", "simulator", "bench")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class ClosureError(VisualSearchError, ValueError):
    """An import of a project module that does not exist (the device would fail the same way)."""


@dataclass
class Closure:
    root: Path
    modules: dict[str, Path] = field(default_factory=dict)
    """Module name → source file, for every project module the entry points can import."""
    third_party: dict[str, set[str]] = field(default_factory=dict)
    """Top-level name of each non-project, non-stdlib import → the project modules that import it."""

    def files(self) -> list[Path]:
        return sorted(self.modules.values())

    def relative_files(self) -> list[str]:
        return [path.relative_to(self.root).as_posix() for path in self.files()]


def module_file(root: Path, name: str) -> Path | None:
    """The source of project module ``name`` under ``root`` (a module file or a package's ``__init__``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(root: Path, entries: list[str]) -> Closure:
    closure = Closure(root)
    queue: deque[tuple[str, str]] = deque((name, "(entry point)") for name in entries)
    while queue:
        name, importer = queue.popleft()
        if name in closure.modules:
            continue
        path = module_file(root, name)
        if path is None:
            raise ClosureError(f"{importer} imports {name}, which is not in the project")
        closure.modules[name] = path
        parts = name.split(".")
        queue.extend((".".join(parts[:i]), name) for i in range(1, len(parts)))  # parent packages
        for target in _imports_of(root, name, path):
            top = target.split(".")[0]
            if top in PROJECT_PACKAGES:
                queue.append((target, name))
            elif top not in sys.stdlib_module_names and top != "__future__":
                closure.third_party.setdefault(top, set()).add(name)
    return closure


def _imports_of(root: Path, name: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(package, node.module, node.level)
            found.append(base)
            # `from pkg import sub` imports the submodule pkg.sub when it is one
            found += [f"{base}.{a.name}" for a in node.names if module_file(root, f"{base}.{a.name}") is not None]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_project_module(root, node.value):
            found.append(node.value)
        elif (plugins := _plugin_package(node)) is not None:
            found += _package_modules(root, plugins)
    return found


def _plugin_package(node: ast.AST) -> str | None:
    """``"pkg"`` of ``load_plugins("pkg")`` (:mod:`model.plugins`): every module of it is imported at run time."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    package = node.args[0].value
    return package if name == "load_plugins" and isinstance(package, str) else None


def _package_modules(root: Path, package: str) -> list[str]:
    folder = root.joinpath(*package.split("."))
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if not path.stem.startswith("_")]


def _names_project_module(root: Path, value: str) -> bool:
    return (
        _DOTTED.match(value) is not None
        and value.split(".")[0] in PROJECT_PACKAGES
        and module_file(root, value) is not None
    )


def _absolute(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = package.split(".")
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, module] if module else base)


def _walk_runtime(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (typing-only imports never run)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
