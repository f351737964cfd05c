"""Distillation methods behind one interface; ``build_method(name, pairs, **options)``."""

from . import at, ce_kd, dkd, fitnet, kd, spkd, subdistill, vid, vkd  # noqa: F401  (register)
from .base import (
    DISTILL_METHODS,
    DistillMethod,
    LayerPair,
    PrepareContext,
    StepOutputs,
    build_method,
    describe_methods,
    list_methods,
    method_class,
    register_method,
)

__all__ = [
    "DISTILL_METHODS",
    "DistillMethod",
    "LayerPair",
    "PrepareContext",
    "StepOutputs",
    "build_method",
    "describe_methods",
    "list_methods",
    "method_class",
    "register_method",
]
