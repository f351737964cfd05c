"""A VGG-style CNN that trains fast on small images (a CIFAR-10 teacher in under an hour on two
CPU cores).

Its layout follows the fast CIFAR-10 training literature (Page 2018, "How to train your
ResNet"; Jordan 2024, "94 % on CIFAR-10 in 3.29 seconds"): a stem, then stages of convolution →
2×2 max-pool → batch norm → GELU → convolution → batch norm → GELU (each stage halves the
resolution), a global max-pool and a linear layer. Few, wide layers at low resolution make it
cheap per image and quick to converge. The stem is a 3×3 convolution with batch norm, or (``stem:
whiten``) a frozen 2×2 convolution initialised from the training images to whiten their 2×2
patches (each eigenvector of the patch covariance scaled by 1/√(eigenvalue + 5e-4), with its
negative), followed by GELU.
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
STEMS = ("conv", "whiten")
WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues before the 1/sqrt


def whitening_filters(images: Tensor, kernel: int = WHITEN_KERNEL,
                      eps: float = WHITEN_EPS) -> Tensor:
    """Convolution filters (2·C·k², C, k, k) that whiten the k×k patches of ``images`` (N, C,
    H, W): the eigenvectors of the patch covariance (largest eigenvalue first), each divided by
    √(eigenvalue + eps), then the same filters negated."""
    channels = images.shape[1]
    patches = images.float().unfold(2, kernel, 1).unfold(3, kernel, 1)  # N, C, H', W', k, k
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * kernel * kernel)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / flat.shape[0])
    filters = (eigenvectors.T.flip(0) / torch.sqrt(eigenvalues.flip(0) + eps)[:, None])
    filters = filters.reshape(-1, channels, kernel, kernel)
    return torch.cat([filters, -filters])


def _conv(in_channels: int, out_channels: int, identity_init: bool) -> nn.Conv2d:
    """3×3 convolution; with ``identity_init`` its first filters pass their input channel
    through unchanged (the rest keep the default initialisation)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    if identity_init:
        with torch.no_grad():
            nn.init.dirac_(conv.weight[:min(in_channels, out_channels)])
    return conv


def _stage(in_channels: int, out_channels: int, identity_init: bool,
           norm_momentum: float) -> nn.Sequential:
    """``down`` (conv → max-pool → BN → GELU) then ``refine`` (conv → BN → GELU), at half the
    input's resolution."""
    def norm() -> nn.BatchNorm2d:
        return nn.BatchNorm2d(out_channels, momentum=norm_momentum)

    return nn.Sequential(OrderedDict(
        down=nn.Sequential(_conv(in_channels, out_channels, identity_init), nn.MaxPool2d(2),
                           norm(), nn.GELU()),
        refine=nn.Sequential(_conv(out_channels, out_channels, identity_init), norm(),
                             nn.GELU())))


def _stem_width(stem: str, stem_width: int | None, in_channels: int) -> int:
    """The stem's channels: ``stem_width`` (default 32) for the conv stem; 2 × C × k² for the
    whitening stem, which takes no other."""
    if stem not in STEMS:
        raise ModelError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}.")
    if stem == "conv":
        return check_width("stem_width", 32 if stem_width is None else stem_width)
    whitened = 2 * in_channels * WHITEN_KERNEL ** 2
    if stem_width not in (None, whitened):
        raise ModelError(f"the whitening stem has 2 x {in_channels} x {WHITEN_KERNEL}^2 = "
                         f"{whitened} channels; leave stem_width unset (got {stem_width}).")
    return whitened


class FastCNN(nn.Module):
    """Stem (3×3 conv, BN, GELU; or the whitening 2×2 conv and GELU), stages ``layer1`` …
    ``layerN`` (:func:`_stage`), global max-pool, linear classifier whose logits are multiplied
    by ``logit_scale`` (the max-pooled features are large: unscaled, the first steps diverge at
    usual learning rates). With ``norm_scales`` false every batch norm's scale stays 1 and only
    its shift is learnt, as in the fast CIFAR-10 recipes; ``norm_momentum`` is the batch norms'
    running-statistics momentum (PyTorch's convention: the weight of the new batch)."""

    def __init__(self, widths: Sequence[int], num_classes: int, in_channels: int = 3,
                 stem_width: int | None = None, logit_scale: float = 0.125,
                 norm_scales: bool = True, stem: str = "conv", identity_init: bool = False,
                 norm_momentum: float = 0.1) -> None:
        super().__init__()
        stem_width = _stem_width(stem, stem_width, in_channels)
        if not 0 <= norm_momentum <= 1:
            raise ModelError(f"norm_momentum must be in [0, 1], got {norm_momentum}.")
        self.whitening = stem == "whiten"
        self.stem = (nn.Sequential(nn.Conv2d(in_channels, stem_width, WHITEN_KERNEL, bias=True),
                                   nn.GELU()) if self.whitening else
                     nn.Sequential(nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(stem_width, momentum=norm_momentum), nn.GELU()))
        if self.whitening:
            self.stem[0].weight.requires_grad_(False)
        channels = stem_width
        for index, width in enumerate(widths):
            self.add_module(f"layer{index + 1}", _stage(channels, check_width("widths", width),
                                                        identity_init, norm_momentum))
            channels = width
        self.num_stages = len(widths)
        self.fc = nn.Linear(channels, num_classes)
        self.logit_scale = logit_scale
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(norm_scales)

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """With the whitening stem, set its frozen filters from ``images`` (normalised, as the
        model will see them) and zero its bias; the trainer calls this before a fresh run."""
        if self.whitening:
            conv = self.stem[0]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            conv.weight.copy_(whitening_filters(images.to(conv.weight.device), WHITEN_KERNEL))
            conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.logit_scale * self.fc(torch.flatten(torch.amax(x, dim=(2, 3)), 1))


@register_model("fast_cnn")
def fast_cnn(num_classes: int, in_channels: int = 3, pretrained: bool = False,
             widths: Sequence[int] = (64, 256, 256), stem_width: int | None = None,
             logit_scale: float = 0.125, norm_scales: bool = True, stem: str = "conv",
             identity_init: bool = False, norm_momentum: float = 0.1) -> FastCNN:
    """VGG-style fast-training CNN (1 to 5 stages, each halving the resolution); the default
    widths are those of the fast CIFAR-10 recipes (64-256-256); ``norm_scales: false`` freezes
    the batch norms' scales at 1. ``stem``: ``conv`` (3×3, ``stem_width`` channels, default 32)
    or ``whiten`` (2×2 patch whitening, 8 × ``in_channels`` channels, set from the training
    images by :meth:`FastCNN.init_from_data`); ``identity_init`` starts each stage convolution's
    first filters as identities; ``norm_momentum`` is the batch norms' momentum."""
    reject_pretrained("fast_cnn", pretrained)
    if not 1 <= len(widths) <= MAX_STAGES:
        raise ModelError(f"widths must have 1 to {MAX_STAGES} entries (one per stage), got "
                         f"{tuple(widths)}.")
    if not 0 < logit_scale < float("inf"):
        raise ModelError(f"logit_scale must be positive and finite, got {logit_scale}.")
    return FastCNN(widths, num_classes, in_channels, stem_width, logit_scale, norm_scales, stem,
                   identity_init, norm_momentum)
