"""Patch flipping: remove patches most-relevant-first and track the explained logit gap.

Cross flipping (does the student rely on what the teacher found relevant?) is the same call
with the other model's heatmaps: ``flip_curves(student, images, labels, teacher_heatmaps)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from subdistill.explain.errors import ExplainError
from subdistill.explain.metrics import patch_pool
from subdistill.explain.patches import default_patch_size, grid_shape, patch_ids
from subdistill.explain.target import logit_gap
from subdistill.modes import frozen

__all__ = ["FlipCurves", "flip_curves", "removal_counts"]


class FlipCurves(NamedTuple):
    """``removed``: (S+1,) fraction of patches removed at each step (0 ... 1);
    ``gaps``: (B, S+1) logit gap of each image after each step."""

    removed: Tensor
    gaps: Tensor


def removal_counts(num_patches: int, steps: int | None = None) -> Tensor:
    """Patches removed after each step: 0, 1, ..., N, or ``steps`` + 1 evenly spaced counts."""
    if steps is None:
        return torch.arange(num_patches + 1)
    if not 1 <= steps <= num_patches:
        raise ExplainError(
            f"steps must be in 1..{num_patches} (the number of patches), got {steps}."
        )
    return torch.linspace(0, num_patches, steps + 1).round().long()


def flip_curves(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    heatmaps: Tensor,
    *,
    patch: int | None = None,
    steps: int | None = None,
    batch_size: int = 64,
) -> FlipCurves:
    """Logit gap of ``model`` (eval mode) while patches are replaced, most relevant first by the
    patch-pooled ``heatmaps`` (B, H, W), with each image's mean colour per channel (normalised
    space). Ties in relevance keep row-major patch order. ``patch`` defaults to
    :func:`default_patch_size`."""
    height, width = images.shape[-2:]
    if heatmaps.shape != (images.shape[0], height, width):
        raise ExplainError(
            f"heatmaps must be (B, H, W) = {(images.shape[0], height, width)}, "
            f"got {tuple(heatmaps.shape)}."
        )
    patch = patch or default_patch_size(height, width)
    rows, cols = grid_shape(height, width, patch)
    counts = removal_counts(rows * cols, steps)
    order = patch_pool(heatmaps, patch).flatten(1).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # 0 = most relevant patch
    ids = patch_ids(height, width, patch).flatten().to(rank.device)
    pixel_rank = rank[:, ids].view(-1, 1, height, width).to(images.device)
    curves = []
    with frozen(model), torch.no_grad():
        for x, y, r in zip(images.split(batch_size), labels.split(batch_size),
                           pixel_rank.split(batch_size), strict=True):
            fill = x.mean((2, 3), keepdim=True)
            curves.append(torch.stack(
                [logit_gap(model(torch.where(r < int(n), fill, x)), y) for n in counts], dim=1
            ))
    return FlipCurves(counts.to(images.dtype) / (rows * cols), torch.cat(curves))
