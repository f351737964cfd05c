"""The explained quantity: the true-class logit gap ``z_y - max_{c != y} z_c``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["gap_function", "gap_output_relevance", "logit_gap", "logit_gap_grad", "runner_up"]


def runner_up(logits: Tensor, labels: Tensor) -> Tensor:
    """Index of the largest logit other than the true class, per row (first one on ties)."""
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.argmax(1)


def logit_gap(logits: Tensor, labels: Tensor) -> Tensor:
    """``z_y - max_{c != y} z_c`` per row of ``logits`` (B, K), K >= 2; differentiable."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.amax(1)


def logit_gap_grad(logits: Tensor, labels: Tensor) -> Tensor:
    """Gradient of the gap wrt ``logits``: +1 at the true class, -1 at the runner-up."""
    grad = torch.zeros_like(logits)
    grad.scatter_(1, labels[:, None], 1.0)
    grad.scatter_(1, runner_up(logits, labels)[:, None], -1.0)
    return grad


def gap_output_relevance(
    labels: Tensor, columns: Tensor | None = None
) -> Callable[[Tensor], Tensor]:
    """Output relevance for zennit: ``logit_gap_grad * logits``, which sums to the gap per row.

    ``columns`` selects the subtask logits from a full model output; the other outputs get none.
    """

    def relevance(output: Tensor) -> Tensor:
        logits = output if columns is None else output[:, columns]
        sub = logit_gap_grad(logits, labels) * logits
        return sub if columns is None else torch.zeros_like(output).index_copy(1, columns, sub)

    return relevance


def gap_function(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``(images, labels) -> logit gap`` of ``model``: a forward function for captum."""

    def forward(images: Tensor, labels: Tensor) -> Tensor:
        return logit_gap(model(images), labels)

    return forward
