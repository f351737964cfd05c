"""A dataset from image and label tensors already in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .base import ArrayImageDataset, Stats


def channel_stats(images: Tensor, chunk: int = 1024) -> tuple[Stats, Stats]:
    """Per-channel mean and standard deviation of uint8 (N, C, H, W) images scaled to 0..1
    (float64 sums over chunks of ``chunk`` images)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block ** 2).sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


class TensorImageDataset(ArrayImageDataset):
    """Images (N, C, H, W) and integer labels held in memory, as every ``distill`` and
    ``make_splits`` call needs them.

    uint8 images (0..255) are normalised on access with ``mean``/``std``, computed from the
    images when not given. Float images are taken as already normalised when no ``mean``/``std``
    are given (recorded as mean 0, std 1), else as values in 0..1 normalised on access.
    ``classes`` defaults to ``"0"``, ``"1"``, ... up to the largest label.
    """

    def __init__(
        self,
        images: Tensor | np.ndarray,
        targets: Sequence[int] | np.ndarray | Tensor,
        classes: Sequence[str] | None = None,
        mean: Stats | None = None,
        std: Stats | None = None,
        family: str | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        self._check_images(images)
        labels = np.asarray(targets)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
            raise DataError(f"labels must be a non-empty 1-D array of integers, got "
                            f"{labels.dtype} of shape {labels.shape}.")
        if labels.min() < 0 or classes is not None and labels.max() >= len(classes):
            count = "" if classes is None else f" for {len(classes)} classes"
            raise DataError(f"labels range over {labels.min()}..{labels.max()}{count}; labels "
                            "are class indices 0..C-1.")
        if (mean is None) != (std is None):
            raise DataError("give both mean and std, or neither.")
        if mean is None or std is None:
            mean, std = (channel_stats(images) if images.dtype == torch.uint8
                         else ((0.0,) * images.shape[1], (1.0,) * images.shape[1]))
        names = classes if classes is not None else [str(c) for c in range(labels.max() + 1)]
        super().__init__(images, labels, names, mean, std, family)

    @staticmethod
    def _check_images(images: Tensor) -> None:
        if images.ndim != 4 or not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise DataError(f"images must be a uint8 or float (N, C, H, W) tensor, got "
                            f"{images.dtype} of shape {tuple(images.shape)}.")
