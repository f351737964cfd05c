"""Square-patch geometry shared by Shapley sampling, heatmap pooling and patch flipping.

Patches tile the image row-major from the top-left corner; when the side does not divide the
image, the last row/column of patches is narrower.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from subdistill.explain.errors import ExplainError

__all__ = ["default_patch_size", "grid_shape", "patch_ids", "shapley_patch_size"]


def default_patch_size(height: int, width: int) -> int:
    """``min(8, min(H, W) // 8)``, at least 1.

    The authors' 8-pixel patches on 224-pixel inputs (a 28x28 grid), and at least an 8x8 grid on
    small images: 4-pixel patches on 32x32 CIFAR, 3-pixel ones on 28x28 MNIST. A fixed 8/224
    fraction would give 1-pixel patches below 56 pixels, too many features for Shapley sampling.
    """
    return max(1, min(8, min(height, width) // 8))


def shapley_patch_size(height: int, width: int) -> int:
    """``max(1, min(H, W) // 8)``: about an 8x8 grid of Shapley players at any size.

    Shapley value sampling costs one forward per player and sample, so the 8-pixel patches of
    :func:`default_patch_size` would make 784 players at 224 pixels (19,601 forwards per image
    at 25 samples); 28-pixel patches make 64 (1,601). Equal to :func:`default_patch_size` below
    72 pixels (CIFAR, MNIST, digits).
    """
    return max(1, min(height, width) // 8)


def grid_shape(height: int, width: int, patch: int) -> tuple[int, int]:
    """Number of patch rows and columns."""
    if patch < 1:
        raise ExplainError(f"patch size must be >= 1 pixel, got {patch}.")
    return math.ceil(height / patch), math.ceil(width / patch)


def patch_ids(height: int, width: int, patch: int) -> Tensor:
    """(H, W) long tensor: the row-major index of the patch each pixel belongs to."""
    _, cols = grid_shape(height, width, patch)
    rows = torch.arange(height) // patch
    return rows[:, None] * cols + (torch.arange(width) // patch)[None, :]
