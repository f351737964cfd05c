"""``timm:<name>`` models, built by ``timm.create_model`` when the optional timm is installed."""

from __future__ import annotations

import importlib
from functools import partial
from types import ModuleType

from torch import nn

from subdistill.errors import ModelError, closest
from subdistill.models.registry import ModelFactory, register_prefix

__all__ = ["resolve_timm"]


def _import_timm() -> ModuleType:
    try:
        return importlib.import_module("timm")
    except ImportError as e:
        raise ModelError(
            "timm models need the optional dependency: pip install subdistill[timm]"
        ) from e


def _build(
    name: str, num_classes: int, in_channels: int = 3, pretrained: bool | str = False,
    **kwargs: object
) -> nn.Module:
    if isinstance(pretrained, str):
        raise ModelError(f"timm model {name!r} takes pretrained: true; name its weight set by a "
                         "tag of the model name instead (timm:<model>.<tag>, e.g. "
                         "timm:resnet50.a1_in1k)")
    timm = _import_timm()
    return timm.create_model(
        name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **kwargs
    )


def resolve_timm(name: str) -> ModelFactory:
    """Factory for timm model ``name``; raises ModelError if timm is missing or lacks it."""
    timm = _import_timm()
    if not timm.is_model(name):
        raise ModelError(
            f"Unknown timm model {name!r}.{closest(name, timm.list_models())} "
            "See timm.list_models()."
        )
    return partial(_build, name)


register_prefix("timm", resolve_timm)
