"""Plugins found by their file: every module of a package is imported, and each registers what it provides.

Frigate's shape (one file per detector, found automatically): adding a camera source or a publisher means
adding one file to ``edge_component/sources/`` or ``edge_component/publishers/`` whose factory carries the
package's ``register`` decorator; no list, ``Literal`` or if-chain to edit. The component's import closure
(:mod:`edge_component.packaging.closure`) ships every module of a package passed to :func:`load_plugins` by name.
"""

from __future__ import annotations

import importlib
import pkgutil

_LOADED: dict[str, dict[str, str]] = {}


def load_plugins(package: str) -> dict[str, str]:
    """Import every public module of ``package`` once; returns ``{module: reason}`` for those that could not be
    imported here (an optional dependency is missing), so an error can name them."""
    if package not in _LOADED:
        unavailable: dict[str, str] = {}
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if info.name.startswith("_"):
                continue
            name = f"{package}.{info.name}"
            try:
                importlib.import_module(name)
            except ImportError as exc:
                unavailable[name] = str(exc)
        _LOADED[package] = unavailable
    return _LOADED[package]


def unknown_kind(kind: object, package: str, registered: list[str]) -> str:
    """What to say about a ``kind`` that no module of ``package`` registered: the kinds that are, and the modules
    that could not be loaded here (their kinds may be the one meant)."""
    text = f"unknown kind {str(kind)[:40]!r}; registered: {', '.join(registered) or 'none'}"
    return text + "".join(f"; {name} not loadable here ({why})" for name, why in load_plugins(package).items())
