"""Optional dependencies (pip extras): a one-line error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError


def missing_extra(package: str, extra: str, purpose: str) -> ConfigError:
    """The error for ``purpose`` when ``package`` (or a module of it) is not installed."""
    package = package.split(".")[0]
    return ConfigError(f"{purpose} needs {package}, which is not installed: "
                       f"pip install 'subdistill[{extra}]'")


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``, or raise :func:`missing_extra` for ``package`` (default: the
    module's top-level name)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(package or module.split(".")[0], extra, purpose) from None
