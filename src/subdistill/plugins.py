"""User extensions without forking: installed plugins and the ``imports:`` of a config.

A plugin is a module that registers its entries when imported (``@register_method``,
``@register_model(...)``, ``@register_dataset(...)``, ``register_attribution(...)``,
...; see ``docs/extending.md``). It is found in one of two ways:

- an installed distribution declares it in the entry-point group ``subdistill.plugins``
  (``[project.entry-points."subdistill.plugins"] my_plugin = "my_package.plugin"``); every
  such module is imported before the first name lookup of any registry;
- a config lists it under ``imports:``, as a module name (``my_package.plugin``) or a path to
  a ``.py`` file (relative to the config file); :func:`import_plugins` imports them before
  the config is validated.

Without registering anything, a model or an LRP canonizer can also be named by import path,
``module:attribute`` (``my_package.models:make_net``), resolved by :func:`import_object`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .errors import ConfigError, SubdistillError, closest, first_line

GROUP = "subdistill.plugins"
_loaded = False


def load_entry_points() -> None:
    """Import every module of the entry-point group ``subdistill.plugins`` (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for point in entry_points(group=GROUP):
        try:
            point.load()
        except Exception as err:  # a broken plugin must name itself, not crash a lookup
            raise ConfigError(f"plugin {point.name!r} ({point.value}) of the entry-point group "
                              f"{GROUP} failed to import: {type(err).__name__}: {err}") from None


def import_plugins(names: Sequence[str], base: str | Path = ".") -> list[ModuleType]:
    """Import the modules of a config's ``imports:`` list: module names, or paths to ``.py``
    files relative to ``base`` (the config file's folder)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"imports: expected a list of module names or .py files, got {names!r}")
    return [_import_one(name, Path(base)) for name in names]


def _import_one(name: str, base: Path) -> ModuleType:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"imports: expected a module name or a .py file, got {name!r}")
    if not name.endswith(".py"):
        try:
            return importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"imports: cannot import module {name!r} ({err}); install it or "
                              "give the path of a .py file") from None
    path = (base / name).resolve()
    if not path.is_file():
        raise ConfigError(f"imports: plugin file {path} does not exist")
    module_name = f"subdistill_plugin_{path.stem}_{abs(hash(str(path))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the plugin's own error, named on one line (-v: traceback)
        del sys.modules[module_name]
        raise ConfigError(f"imports: plugin file {path} failed to import: "
                          f"{type(err).__name__}: {err}") from err
    return module


def import_object(path: str, error: type[SubdistillError] = ConfigError) -> object:
    """The object an import path ``module:attribute`` names (``my_package.models:make_net``;
    the attribute may be dotted). Raises ``error`` when the module cannot be imported or lacks
    the attribute."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise error(f"{path!r} is not an import path module:attribute (e.g. my_pkg.models:make_net)")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as err:
        raise error(f"{path!r}: cannot import module {module_name!r} ({first_line(err)}); "
                    "install it or add its folder to PYTHONPATH") from None
    except Exception as err:  # the module's own error, named on one line (-v: traceback)
        raise error(f"{path!r}: module {module_name!r} failed to import: "
                    f"{type(err).__name__}: {first_line(err)}") from err
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise error(f"{path!r}: {getattr(target, '__name__', module_name)!r} has no attribute "
                        f"{part!r}.{closest(part, names)}")
        target = getattr(target, part)
    return target


def keywords_taken(target: Callable[..., object], offered: Iterable[str],
                   error: type[SubdistillError] = ConfigError) -> set[str]:
    """The names in ``offered`` that ``target`` takes as keyword arguments (all of them when it
    has ``**kwargs``), so that a user's callable is given only what its signature asks for."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        raise error(f"cannot read the signature of {target!r}") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return set(offered)
    return {name for name in offered
            if name in params and params[name].kind is not inspect.Parameter.POSITIONAL_ONLY}
