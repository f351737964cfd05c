"""Replacing a layer's output by its rank-k reconstruction ``μ + U_k U_kᵀ (a − μ)`` and
measuring what the teacher keeps of the subtask (pure functions and one context manager)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..errors import LayerNotFoundError
from ..modes import eval_mode
from ..subspace.basis import Basis
from ..subspace.fit import logit_margin
from ..taps import prefix_token_count, resolve_module


def reconstruct(output: Tensor, U: Tensor, mean: Tensor) -> Tensor:
    """``output`` (maps (B, C, H, W), tokens (B, N, C) or vectors (B, C)) with every channel
    vector a replaced by ``mean + U Uᵀ (a − mean)``; for tokens the leading class/register
    tokens are kept as they are (the basis describes the patch tokens)."""
    U, mean = U.to(output.dtype), mean.to(output.dtype)

    def project(vectors: Tensor) -> Tensor:  # (..., C)
        return mean + ((vectors - mean) @ U) @ U.T

    if output.ndim == 4:
        return project(output.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    if output.ndim == 3:
        prefix = prefix_token_count(output.shape[1])
        return torch.cat([output[:, :prefix], project(output[:, prefix:])], dim=1)
    if output.ndim == 2:
        return project(output)
    raise LayerNotFoundError(f"cannot reconstruct a layer output of shape {tuple(output.shape)}")


@contextmanager
def reconstructed(model: nn.Module, layer: str, U: Tensor, mean: Tensor) -> Iterator[nn.Module]:
    """``model`` with the output of module ``layer`` replaced by its reconstruction from the
    orthonormal columns of ``U`` (d × k) around ``mean``; the hook is removed on exit."""
    handle = resolve_module(model, layer).register_forward_hook(
        lambda m, a, out: reconstruct(out, U, mean))
    try:
        yield model
    finally:
        handle.remove()


@torch.no_grad()
def subtask_scores(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Accuracy and mean top-1 margin (top logit minus runner-up) of ``model`` (eval mode)."""
    correct = total = 0
    margin = 0.0
    with eval_mode(model):
        for x, y in batches:
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            margin += float(logit_margin(logits).sum())
            total += len(y)
    return correct / max(total, 1), margin / max(total, 1)


def k_grid(d: int) -> list[int]:
    """1, 2, 4, ... below ``d``, then ``d``: the ranks a curve is measured at."""
    ks, k = [], 1
    while k < d:
        ks.append(k)
        k *= 2
    return ks + [d]


def rank_curve(model: nn.Module, layer: str, basis: Basis, batches: Sequence[tuple[Tensor, Tensor]],
               ks: Sequence[int]) -> list[tuple[int, float, float]]:
    """(k, accuracy, mean margin) of ``model`` with ``layer`` reconstructed from the first k
    directions of ``basis``, for every k of ``ks``."""
    curve = []
    for k in ks:
        with reconstructed(model, layer, basis.U[:, :k], basis.mean):
            curve.append((k, *subtask_scores(model, batches)))
    return curve


def dimensions_needed(curve: Sequence[tuple[int, float, float]], reference: float,
                      tolerance: float = 0.01) -> int | None:
    """The smallest k whose accuracy is within ``tolerance`` of ``reference`` (None: none)."""
    return next((k for k, accuracy, _ in curve if accuracy >= reference - tolerance), None)
