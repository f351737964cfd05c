"""Heatmap comparison metrics: pure functions on (B, H, W) heatmaps, one value per image.

Compare teacher and student heatmaps of the same images after :func:`patch_pool`, so that a
one-pixel shift between architectures does not count as disagreement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from subdistill.explain.errors import ExplainError

__all__ = ["cosine", "patch_pool", "pearson", "topk_overlap"]


def patch_pool(heatmaps: Tensor, patch: int) -> Tensor:
    """(B, H, W) -> (B, ceil(H/p), ceil(W/p)): sum of relevance in each p x p patch (row-major,
    like :func:`subdistill.explain.patches.patch_ids`; edge patches may be narrower)."""
    if patch < 1:
        raise ExplainError(f"patch size must be >= 1 pixel, got {patch}.")
    pooled = F.avg_pool2d(heatmaps[:, None], patch, ceil_mode=True, divisor_override=1)
    return pooled[:, 0]


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.ndim < 2:
        raise ExplainError(
            f"heatmaps must have the same shape (B, ...), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    return a.flatten(1), b.flatten(1)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity per image; NaN where a map is all zero."""
    a, b = _pair(a, b)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per image (cosine of the centred maps); NaN where a map is constant."""
    a, b = _pair(a, b)
    return cosine(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))


def topk_overlap(a: Tensor, b: Tensor, k: int) -> Tensor:
    """``|topk(a) ∩ topk(b)| / k`` per image over the flattened maps (torch.topk breaks ties)."""
    a, b = _pair(a, b)
    if not 1 <= k <= a.shape[1]:
        raise ExplainError(f"k must be in 1..{a.shape[1]} (entries per map), got {k}.")
    top_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return (top_a & top_b).sum(1).to(a.dtype) / k
