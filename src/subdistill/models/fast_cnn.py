"""A VGG-style CNN that trains fast on small images (a CIFAR-10 teacher in under an hour on two
CPU cores).

Its layout follows the fast CIFAR-10 training literature (Page 2018, "How to train your
ResNet"; Jordan 2024, "94 % on CIFAR-10 in 3.29 seconds"): a 3×3 stem convolution, then stages
of convolution → 2×2 max-pool → batch norm → GELU → convolution → batch norm → GELU (each stage
halves the resolution), a global max-pool and a linear layer. Few, wide layers at low
resolution make it cheap per image and quick to converge.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from subdistill.errors import ModelError
from subdistill.models.cifar_resnet import check_width
from subdistill.models.registry import register_model, reject_pretrained

__all__ = ["FastCNN", "fast_cnn"]

MAX_STAGES = 5  # a 32-px image is 1 px after five halvings


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """``down`` (conv → max-pool → BN → GELU) then ``refine`` (conv → BN → GELU), at half the
    input's resolution."""
    return nn.Sequential(OrderedDict(
        down=nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                           nn.MaxPool2d(2), nn.BatchNorm2d(out_channels), nn.GELU()),
        refine=nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                             nn.BatchNorm2d(out_channels), nn.GELU())))


class FastCNN(nn.Module):
    """Stem (3×3 conv, BN, GELU), stages ``layer1`` … ``layerN`` (:func:`_stage`), global
    max-pool, linear classifier whose logits are multiplied by ``logit_scale`` (the max-pooled
    features are large: unscaled, the first steps diverge at usual learning rates). With
    ``norm_scales`` false every batch norm's scale stays 1 and only its shift is learnt, as in
    the fast CIFAR-10 recipes."""

    def __init__(self, widths: Sequence[int], num_classes: int, in_channels: int = 3,
                 stem_width: int = 32, logit_scale: float = 0.125,
                 norm_scales: bool = True) -> None:
        super().__init__()
        stem_width = check_width("stem_width", stem_width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.GELU())
        channels = stem_width
        for index, width in enumerate(widths):
            self.add_module(f"layer{index + 1}", _stage(channels, check_width("widths", width)))
            channels = width
        self.num_stages = len(widths)
        self.fc = nn.Linear(channels, num_classes)
        self.logit_scale = logit_scale
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(norm_scales)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.logit_scale * self.fc(torch.flatten(torch.amax(x, dim=(2, 3)), 1))


@register_model("fast_cnn")
def fast_cnn(num_classes: int, in_channels: int = 3, pretrained: bool = False,
             widths: Sequence[int] = (64, 256, 256), stem_width: int = 32,
             logit_scale: float = 0.125, norm_scales: bool = True) -> FastCNN:
    """VGG-style fast-training CNN (1 to 5 stages, each halving the resolution); the default
    widths are those of the fast CIFAR-10 recipes (64-256-256); ``norm_scales: false`` freezes
    the batch norms' scales at 1."""
    reject_pretrained("fast_cnn", pretrained)
    if not 1 <= len(widths) <= MAX_STAGES:
        raise ModelError(f"widths must have 1 to {MAX_STAGES} entries (one per stage), got "
                         f"{tuple(widths)}.")
    if not 0 < logit_scale < float("inf"):
        raise ModelError(f"logit_scale must be positive and finite, got {logit_scale}.")
    return FastCNN(widths, num_classes, in_channels, stem_width, logit_scale, norm_scales)
