"""List a model's layers with their output shapes, to help choose distillation taps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ModelError, first_line
from ..modes import eval_mode

__all__ = ["FORWARD_ERRORS", "LayerInfo", "format_layer_table", "layer_shapes"]

FORWARD_ERRORS = (RuntimeError, ValueError, AssertionError, TypeError, IndexError)
"""What a model's forward raises on an input it cannot take (wrong channels, size, ...)."""


@dataclass(frozen=True)
class LayerInfo:
    """A module path, its class name, its output shape and how often it ran in one forward."""

    path: str
    type: str
    shape: tuple[int, ...]
    calls: int = 1


def layer_shapes(model: nn.Module, example: Tensor) -> list[LayerInfo]:
    """Submodules (not the root) whose output is a tensor, in the order they start running.

    A module run several times (e.g. a shared activation) is listed once, with the shape of
    its first output and its call count.
    """
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    modules = dict(model.named_modules())
    handles = []

    def pre_hook(path: str) -> None:
        if path not in calls:
            order.append(path)
        calls[path] = calls.get(path, 0) + 1

    def hook(path: str, output: object) -> None:
        if isinstance(output, Tensor):
            shapes.setdefault(path, tuple(output.shape))

    try:
        for path, module in modules.items():
            if path:
                handles.append(module.register_forward_pre_hook(lambda m, a, p=path: pre_hook(p)))
                handles.append(module.register_forward_hook(lambda m, a, o, p=path: hook(p, o)))
        with eval_mode(model), torch.no_grad():
            model(example)
    except FORWARD_ERRORS as err:
        size = "x".join(map(str, example.shape[1:]))
        raise ModelError(f"the {type(model).__name__} cannot run on a {size} input "
                         f"({first_line(err)}); give the input size it expects, e.g. "
                         "3,224,224") from None
    finally:
        for handle in handles:
            handle.remove()
    return [
        LayerInfo(path, type(modules[path]).__name__, shapes[path], calls[path])
        for path in order
        if path in shapes
    ]


def default_input_size(model: nn.Module, channels: int = 3) -> tuple[int, int, int]:
    """The (C, H, W) input ``model`` declares (torchvision's ``image_size``, timm's
    ``pretrained_cfg``), else ``channels`` x 32 x 32."""
    declared = getattr(model, "pretrained_cfg", None) or {}
    if isinstance(declared, dict) and len(declared.get("input_size", ())) == 3:
        c, h, w = declared["input_size"]
        return channels, int(h), int(w)
    side = getattr(model, "image_size", None)
    return (channels, side, side) if isinstance(side, int) else (channels, 32, 32)


def format_layer_table(infos: list[LayerInfo]) -> str:
    """A plain-text table: path, type, output shape (``x3`` marks a module run three times)."""
    rows = [("path", "type", "output shape")] + [
        (
            info.path,
            info.type if info.calls == 1 else f"{info.type} x{info.calls}",
            "x".join(map(str, info.shape)),
        )
        for info in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{path:<{widths[0]}}  {kind:<{widths[1]}}  {shape}".rstrip() for path, kind, shape in rows
    )
