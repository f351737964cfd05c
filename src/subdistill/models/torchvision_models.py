"""Every torchvision classification model, registered under its torchvision name.

Nothing is built at import. ``pretrained=True`` loads torchvision's ``DEFAULT`` weights,
``pretrained="IMAGENET1K_V1"`` (any name of the model's weight enum) that weight set
(downloaded on first use). With pretrained weights and ``num_classes`` different from the
weights' class count, every classifier output layer (including auxiliary heads) is replaced by a
freshly initialised one. ``in_channels != 3`` replaces the stem convolution; pretrained stem
filters are summed over RGB and spread evenly over the new channels, so a grey image repeated
on every channel gives the RGB response.
"""

from __future__ import annotations

from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from subdistill.errors import ModelError, closest
from subdistill.models.registry import register_model

__all__ = ["torchvision_model", "weight_set"]


def torchvision_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool | str = False,
    **kwargs: object,
) -> nn.Module:
    """Build torchvision model ``name``; ``pretrained``: true (the ``DEFAULT`` weights) or a
    weight set's name (see :func:`weight_set`); extra ``kwargs`` go to its torchvision builder."""
    weights = weight_set(name, pretrained) if pretrained else None
    size = {} if weights else {"num_classes": num_classes}
    try:
        model = torchvision.models.get_model(name, weights=weights, **size, **kwargs)
    except (TypeError, ValueError) as e:
        raise ModelError(
            f"torchvision model {name!r} rejected arguments {sorted(kwargs)}: {e}"
        ) from e
    if weights is not None:
        categories = len(weights.meta["categories"])
        if num_classes != categories:
            _replace_heads(model, categories, num_classes)
    if in_channels != 3:
        _replace_stem(model, name, in_channels, weights is not None)
    return model


def weight_set(name: str, pretrained: bool | str) -> WeightsEnum:
    """The published weights of torchvision model ``name`` that ``pretrained`` names: ``DEFAULT``
    for true, else the weight enum's member of that name (``IMAGENET1K_V1``, ...); nothing is
    downloaded here."""
    sets = torchvision.models.get_model_weights(name)
    choice = "DEFAULT" if pretrained is True else str(pretrained)
    if choice not in sets.__members__:
        names = [member.name for member in sets]
        raise ModelError(f"torchvision model {name!r} has no weight set {choice!r}."
                         f"{closest(choice, names)} Available: {', '.join(names)} "
                         f"(pretrained: true = DEFAULT = {sets.DEFAULT.name}).")
    return sets[choice]


def _replace_heads(model: nn.Module, old_classes: int, num_classes: int) -> None:
    """Swap every Linear / 1x1 Conv2d that outputs ``old_classes`` for one with ``num_classes``."""
    heads = [
        (path, m)
        for path, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == old_classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == old_classes and m.kernel_size == (1, 1))
    ]
    for path, m in heads:
        if isinstance(m, nn.Linear):
            new: nn.Module = nn.Linear(m.in_features, num_classes, bias=m.bias is not None)
        else:
            new = nn.Conv2d(m.in_channels, num_classes, 1, bias=m.bias is not None)
        model.set_submodule(path, new.to(m.weight.device))


def _replace_stem(model: nn.Module, name: str, in_channels: int, pretrained: bool) -> None:
    """Give the first Conv2d ``in_channels`` inputs."""
    path, stem = next(
        ((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None)
    )
    transforms_rgb = getattr(model, "transform_input", False)  # googlenet, inception_v3
    if stem is None or stem.in_channels != 3 or stem.groups != 1 or transforms_rgb:
        raise ModelError(
            f"Cannot adapt torchvision model {name!r} to in_channels={in_channels}; "
            "use in_channels=3."
        )
    new = nn.Conv2d(
        in_channels,
        stem.out_channels,
        (stem.kernel_size[0], stem.kernel_size[1]),
        (stem.stride[0], stem.stride[1]),
        stem.padding if isinstance(stem.padding, str) else (stem.padding[0], stem.padding[1]),
        (stem.dilation[0], stem.dilation[1]),
        bias=stem.bias is not None,
        padding_mode=stem.padding_mode,
    ).to(stem.weight.device)
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(stem.weight.sum(1, keepdim=True).expand_as(new.weight) / in_channels)
            if stem.bias is not None and new.bias is not None:
                new.bias.copy_(stem.bias)
    model.set_submodule(path, new)


for _name in torchvision.models.list_models(module=torchvision.models):
    register_model(_name)(partial(torchvision_model, _name))
