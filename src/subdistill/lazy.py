"""Lazy package exports: a name is imported from its module on first use, so that importing
the package (and ``subdistill --help``) does not load torch and every submodule."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                                   Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports`` (name ->
    module relative to the package) on first access."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def dir_() -> list[str]:
        return sorted(exports)

    return getattr_, dir_
