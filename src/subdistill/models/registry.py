"""Model registry: build any registered network by name, and save/load its weights.

A factory has the signature ``f(num_classes, in_channels=3, pretrained=False, **kwargs)``.
Names of the form ``"prefix:name"`` are resolved by a prefix resolver (e.g. ``timm:``); any
other ``"module:callable"`` (``my_pkg.models:make_net``) names a user's own factory, imported
on use and given ``num_classes``, ``in_channels`` and ``pretrained`` only where its signature
takes them.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file
from torch import nn

from subdistill.atomic import atomic_path
from subdistill.errors import ModelError, closest, first_line
from subdistill.plugins import import_object, keywords_taken
from subdistill.registry import Registry

__all__ = [
    "MODELS",
    "MODEL_PREFIXES",
    "ModelFactory",
    "count_parameters",
    "create_model",
    "list_models",
    "load_weights",
    "register_model",
    "register_prefix",
    "reject_pretrained",
    "save_weights",
]

_BASE_ARGS = ("num_classes", "in_channels", "pretrained")
_MAX_LISTED = 10


# ``f(num_classes, in_channels=3, pretrained=False, **kwargs) -> nn.Module``
ModelFactory = Callable[..., nn.Module]


PrefixResolver = Callable[[str], ModelFactory]
F = TypeVar("F", bound=ModelFactory)

MODELS: Registry[ModelFactory] = Registry(
    "model", ModelError, "`subdistill list models` lists them; 'my_pkg.module:make_net' builds "
    "your own factory's model, 'timm:<name>' timm's (its own implementation, whose layer paths "
    "differ from those of the torchvision model of the same name).")
MODEL_PREFIXES: Registry[PrefixResolver] = Registry("model prefix", ModelError)


def register_model(name: str) -> Callable[[F], F]:
    """Decorator registering a model factory under ``name``."""
    if ":" in name:
        raise ModelError(f"Model name {name!r} must not contain ':' (reserved for prefixes).")

    def decorator(factory: F) -> F:
        MODELS.register(name, factory)
        return factory

    return decorator


def register_prefix(prefix: str, resolver: PrefixResolver) -> None:
    """Route names ``"prefix:<name>"`` to ``resolver(<name>)``, which returns a factory."""
    MODEL_PREFIXES.register(prefix, resolver)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a shell-style pattern."""
    names = MODELS.names()
    return names if pattern is None else fnmatch.filter(names, pattern)


def reject_pretrained(name: str, pretrained: bool | str) -> None:
    """Raise for ``pretrained`` (true or a weight set's name) on a model that has no published
    weights."""
    if pretrained:
        raise ModelError(
            f"Model {name!r} has no pretrained weights; train it, or pass weights=PATH "
            "to load a .safetensors state dict."
        )


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool | str = False,
    weights: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build model ``name`` (a registered name, ``prefix:name`` or ``module:callable``);
    ``pretrained`` is true or the name of a published weight set (torchvision's
    ``IMAGENET1K_V1``, ...); ``weights`` optionally names a .safetensors state dict to load."""
    if num_classes < 1 or in_channels < 1:
        raise ModelError(
            f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}."
        )
    if pretrained and weights is not None:
        raise ModelError("Pass either pretrained=True or weights=PATH, not both.")
    factory = _resolve(name)
    _check_kwargs(name, factory, kwargs)
    try:
        model = factory(num_classes, in_channels=in_channels, pretrained=pretrained, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # ill-typed or inconsistent arguments
        raise ModelError(f"cannot build {name!r} with arguments {kwargs}: {err}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"the factory of model {name!r} returned a {type(model).__name__!r}, "
                         "not a torch nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model


def _resolve(name: str) -> ModelFactory:
    prefix, sep, rest = name.partition(":")
    if not sep:
        return MODELS.get(name)
    if prefix in MODEL_PREFIXES:
        return MODEL_PREFIXES.get(prefix)(rest)
    return _user_factory(name)


def _user_factory(path: str) -> ModelFactory:
    """The factory of a ``module:callable`` model name, adapted to the registry's signature:
    ``num_classes``, ``in_channels`` and ``pretrained`` are passed only where the callable's
    signature takes them (``pretrained`` must then not be asked for)."""
    try:
        target = import_object(path, ModelError)
    except ModelError as err:
        prefix = path.partition(":")[0]
        hint = closest(prefix, MODEL_PREFIXES.names())
        if not hint:
            raise
        raise ModelError(f"unknown model prefix {prefix!r}.{hint} Prefixes: "
                         f"{', '.join(MODEL_PREFIXES.names())}; as module:callable: "
                         f"{first_line(err)}") from None
    if not callable(target):
        raise ModelError(f"model {path!r} is not callable (a {type(target).__name__!r}); name "
                         "a function or class that returns an nn.Module")
    taken = keywords_taken(target, _BASE_ARGS, ModelError)

    def factory(num_classes: int, in_channels: int = 3, pretrained: bool | str = False,
                **kwargs: object) -> nn.Module:
        if pretrained and "pretrained" not in taken:
            raise ModelError(f"model {path!r} takes no 'pretrained' argument; load weights with "
                             "weights=PATH instead")
        given = {"num_classes": num_classes, "in_channels": in_channels, "pretrained": pretrained}
        return target(**{key: value for key, value in given.items() if key in taken}, **kwargs)

    # __wrapped__ only (not a class's __dict__): the arguments check reads target's signature
    return functools.update_wrapper(factory, target, assigned=(), updated=())


def _check_kwargs(name: str, factory: ModelFactory, kwargs: dict[str, object]) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in _BASE_ARGS]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        extra = ", ".join(accepted) or "no arguments besides num_classes, in_channels, pretrained"
        raise ModelError(
            f"Model {name!r} got unexpected argument(s) {', '.join(unknown)}; it accepts: {extra}."
        )


def count_parameters(model: nn.Module) -> int:
    """Number of (distinct) parameter elements of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _saved_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # Clones: safetensors refuses tensors that share storage (e.g. tied weights).
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` to a .safetensors file atomically (parent folders created)."""
    with atomic_path(path) as tmp:
        save_file(_saved_state(model), tmp)


def weights_bytes(model: nn.Module) -> int:
    """The size of the file :func:`save_weights` writes for ``model`` (whatever its values)."""
    return len(save(_saved_state(model)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a .safetensors state dict into ``model`` strictly (keys and shapes must match)."""
    if not Path(path).is_file():
        raise ModelError(f"Weights file {str(path)!r} does not exist.")
    try:
        state = load_file(path)
    except PermissionError:
        raise ModelError(f"Weights file {str(path)!r} cannot be read: permission denied.") from None
    except (OSError, SafetensorError) as e:
        raise ModelError(f"Cannot read weights file {str(path)!r} (not a safetensors file, or "
                         f"truncated): {e}") from e
    _check_state(model.state_dict(), state, path)
    model.load_state_dict(state, strict=True)


def _check_state(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], path: str | Path
) -> None:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k} (file {tuple(given[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    problems = [
        f"{label}: {_listing(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise ModelError(
            f"Weights file {str(path)!r} does not fit the model; " + "; ".join(problems) + "."
        )


def _listing(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return ", ".join(items[:_MAX_LISTED]) + (f" ... (+{more} more)" if more > 0 else "")
