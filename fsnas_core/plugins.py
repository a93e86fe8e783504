"""Every module of a plugin package imported when the package is, so that a new dataset or learner is one new
file that registers itself (no import line to add elsewhere)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable


def import_submodules(package: str, path: Iterable[str]) -> None:
    """``import_submodules(__name__, __path__)`` in a package's ``__init__``: its modules, in name order."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
