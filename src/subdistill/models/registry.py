"""Model registry: build any registered network by name, and save/load its weights.

A factory has the signature ``f(num_classes, in_channels=3, pretrained=False, **kwargs)``.
Names of the form ``"prefix:name"`` are resolved by a prefix resolver (e.g. ``timm:``).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from subdistill.atomic import atomic_path
from subdistill.errors import ModelError
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
    "model", ModelError, "`subdistill list models` lists them; prefixed names such as "
    "'timm:<name>' reach other libraries.")
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


def reject_pretrained(name: str, pretrained: bool) -> None:
    """Raise for ``pretrained=True`` on a model that has no published weights."""
    if pretrained:
        raise ModelError(
            f"Model {name!r} has no pretrained weights; train it, or pass weights=PATH "
            "to load a .safetensors state dict."
        )


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build model ``name``; ``weights`` optionally names a .safetensors state dict to load."""
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
    if weights is not None:
        load_weights(model, weights)
    return model


def _resolve(name: str) -> ModelFactory:
    prefix, sep, rest = name.partition(":")
    return MODEL_PREFIXES.get(prefix)(rest) if sep else MODELS.get(name)


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


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` to a .safetensors file atomically (parent folders created)."""
    # Clones: safetensors refuses tensors that share storage (e.g. tied weights).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp)


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
