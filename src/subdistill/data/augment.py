"""Batch-wise augmentation of normalised float images (B, C, H, W) on their own device.

Random draws use torch's global RNG, so ``torch.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry

Augment = Callable[[Tensor], Tensor]


class RandomCrop:
    """Pad each side by ``pad`` pixels and crop back to the original size at a random offset per
    sample. ``mode`` ``constant`` pads zeros (the mean colour, images being normalised);
    ``reflect`` mirrors the border (a translation that invents no flat margin)."""

    def __init__(self, pad: int, mode: str = "constant") -> None:
        self.pad, self.mode = pad, mode

    def __call__(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4, mode=self.mode)
        top = torch.randint(0, 2 * self.pad + 1, (b, 1), device=x.device)
        left = torch.randint(0, 2 * self.pad + 1, (b, 1), device=x.device)
        rows = (top + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (left + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        # Advanced indexing puts the indexed dims first: (B, H, W, C) -> (B, C, H, W), copied
        # to NCHW strides (``contiguous()`` keeps the channels-last strides of one channel)
        return padded[batch, :, rows, cols].permute(0, 3, 1, 2).clone(
            memory_format=torch.contiguous_format)


def random_flip(x: Tensor) -> Tensor:
    """Flip each sample horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class RandomResizedCrop:
    """Per-sample crop of random area fraction ``scale`` and aspect ratio ``ratio``, resized
    (bilinearly) back to the input size; the box is drawn as torchvision's RandomResizedCrop
    draws it (10 tries, then a centre crop)."""

    def __init__(self, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> None:
        self.scale, self.ratio, self.tries = scale, ratio, tries

    def __call__(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        height, width = self._boxes(b, h, w, x.device)
        top = torch.floor(torch.rand(b, device=x.device) * (h - height + 1))
        left = torch.floor(torch.rand(b, device=x.device) * (w - width + 1))
        # Affine map from output coordinates in [-1, 1] to the box in input coordinates.
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = width / w
        theta[:, 0, 2] = (2 * left + width) / w - 1
        theta[:, 1, 1] = height / h
        theta[:, 1, 2] = (2 * top + height) / h - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def _boxes(self, b: int, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Box (height, width) per sample, as float tensors of whole pixels."""
        area = h * w * torch.empty(b, self.tries, device=device).uniform_(*self.scale)
        log_ratio = torch.empty(b, self.tries, device=device).uniform_(
            math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = torch.exp(log_ratio)
        width = torch.round(torch.sqrt(area * aspect))
        height = torch.round(torch.sqrt(area / aspect))
        fits = (width > 0) & (width <= w) & (height > 0) & (height <= h)
        first = fits.int().argmax(dim=1, keepdim=True)  # first fitting try
        fallback_h, fallback_w = self._centre_box(h, w)
        found = fits.any(dim=1)
        height = torch.where(found, height.gather(1, first)[:, 0], float(fallback_h))
        width = torch.where(found, width.gather(1, first)[:, 0], float(fallback_w))
        return height, width

    def _centre_box(self, h: int, w: int) -> tuple[int, int]:
        """torchvision's fallback box: the whole image, clamped to the ratio range."""
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            return round(w / self.ratio[0]), w
        if in_ratio > self.ratio[1]:
            return h, round(h * self.ratio[1])
        return h, w


class Cutout:
    """Cutout (DeVries & Taylor, 2017): zero (the mean colour, images being normalised) one
    ``side`` x ``side`` square per sample, centred on a uniformly drawn pixel and clipped at
    the image border."""

    def __init__(self, side: int) -> None:
        self.side = side

    def __call__(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        centre_y = torch.randint(0, h, (b, 1, 1), device=x.device)
        centre_x = torch.randint(0, w, (b, 1, 1), device=x.device)
        low = self.side // 2
        rows = torch.arange(h, device=x.device)[None, :, None] - centre_y
        cols = torch.arange(w, device=x.device)[None, None, :] - centre_x
        inside = (rows >= -low) & (rows < self.side - low) & (cols >= -low) & (cols < self.side - low)
        return x.masked_fill(inside[:, None], 0.0)


def _compose(*augments: Augment) -> Augment:
    def apply(x: Tensor) -> Tensor:
        for augment in augments:
            x = augment(x)
        return x

    return apply


AugmentFactory = Callable[[int], Augment | None]
AUGMENTS: Registry[AugmentFactory] = Registry("augmentation")


def register_augment(name: str) -> Callable[[AugmentFactory], AugmentFactory]:
    """Register ``factory(image_size) -> augment or None`` as augmentation ``name``."""
    return AUGMENTS.register(name)


def list_augments() -> list[str]:
    """Names of the registered augmentations."""
    return AUGMENTS.names()


def _crop(size: int) -> RandomCrop:
    return RandomCrop(max(1, size // 8))


AUGMENTS.register("none", lambda size: None)
AUGMENTS.register("crop", _crop)
AUGMENTS.register("flip", lambda size: random_flip)
AUGMENTS.register("crop-flip", lambda size: _compose(_crop(size), random_flip))
AUGMENTS.register("crop-flip-cutout", lambda size: _compose(_crop(size), random_flip,
                                                             Cutout(max(1, size // 2))))
AUGMENTS.register("translate-flip", lambda size: _compose(
    RandomCrop(max(1, size // 16), mode="reflect"), random_flip))
AUGMENTS.register("resized-crop-flip", lambda size: _compose(RandomResizedCrop(), random_flip))


def build_augment(name: str, image_size: int) -> Augment | None:
    """The batch augmentation ``name`` for images of side ``image_size`` (None for "none").

    ``crop`` pads by ``max(1, image_size // 8)`` (4 for 32 px); ``crop-flip`` is the CIFAR
    recipe, ``crop-flip-cutout`` adds a cutout square of half the image side (16 px on 32 px),
    ``translate-flip`` shifts by up to ``max(1, image_size // 16)`` pixels (2 for 32 px) over a
    mirrored border, as the fast CIFAR-10 recipes do; ``resized-crop-flip`` is the ImageNet
    recipe.
    """
    return AUGMENTS.get(name)(image_size)
