"""Streaming first and second moments of (activation, gradient) pairs, in float64.

Only sums are kept, so memory does not grow with the number of samples and partial sums
from several batches (or several processes) are merged by adding them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Moments:
    """Moments of N pairs (a, c): mean of a, and the centred/uncentred covariances of the spec.

    ``cov_a = E[(a-μ)(a-μ)ᵀ]``, ``cov_c = E[c cᵀ]`` (gradients are not centred),
    ``cov_ac = E[(a-μ) cᵀ]``.
    """

    count: int
    mean: Tensor
    cov_a: Tensor
    cov_c: Tensor
    cov_ac: Tensor

    @property
    def dim(self) -> int:
        return self.mean.numel()


class MomentAccumulator:
    """Accumulates the sums behind :class:`Moments` batch by batch (float64).

    ``with_gradients=False`` accumulates activation moments only (``cov_c`` and ``cov_ac``
    are then zero).
    """

    def __init__(self, dim: int, with_gradients: bool = True, device: torch.device | str = "cpu"):
        self.dim = dim
        self.with_gradients = with_gradients
        self.count = 0
        self.sum_a = torch.zeros(dim, dtype=torch.float64, device=device)
        self.sum_aa = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        if with_gradients:
            self.sum_c = torch.zeros(dim, dtype=torch.float64, device=device)
            self.sum_cc = torch.zeros(dim, dim, dtype=torch.float64, device=device)
            self.sum_ac = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, activations: Tensor, gradients: Tensor | None = None) -> None:
        """Add N samples: ``activations`` (and ``gradients``) of shape (N, dim)."""
        a = activations.detach().to(self.sum_a.device, torch.float64).reshape(-1, self.dim)
        self.count += a.shape[0]
        self.sum_a += a.sum(0)
        self.sum_aa += a.T @ a
        if self.with_gradients:
            if gradients is None:
                raise ValueError("this accumulator needs gradients")
            c = gradients.detach().to(self.sum_a.device, torch.float64).reshape(-1, self.dim)
            self.sum_c += c.sum(0)
            self.sum_cc += c.T @ c
            self.sum_ac += a.T @ c

    def sums(self) -> list[Tensor]:
        """The raw sums (for all-reduce across processes), count first as a tensor."""
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=self.sum_a.device)
        extra = [self.sum_c, self.sum_cc, self.sum_ac] if self.with_gradients else []
        return [count, self.sum_a, self.sum_aa, *extra]

    def load_sums(self, sums: list[Tensor]) -> None:
        """Set the sums from a list shaped like :meth:`sums` (e.g. after an all-reduce)."""
        count, *tensors = sums
        self.count = round(float(count.item()))
        names = ["sum_a", "sum_aa"] + (["sum_c", "sum_cc", "sum_ac"] if self.with_gradients else [])
        for name, value in zip(names, tensors, strict=True):
            setattr(self, name, value)

    def moments(self) -> Moments:
        """Normalise the sums into :class:`Moments`."""
        if self.count == 0:
            raise ValueError("no samples were accumulated")
        n = float(self.count)
        mean = self.sum_a / n
        cov_a = self.sum_aa / n - torch.outer(mean, mean)
        cov_a = (cov_a + cov_a.T) / 2
        if self.with_gradients:
            mean_c = self.sum_c / n
            cov_c = self.sum_cc / n
            cov_ac = self.sum_ac / n - torch.outer(mean, mean_c)
        else:
            cov_c = torch.zeros_like(cov_a)
            cov_ac = torch.zeros_like(cov_a)
        return Moments(self.count, mean, cov_a, (cov_c + cov_c.T) / 2, cov_ac)


def moments_of(activations: Tensor, gradients: Tensor | None = None) -> Moments:
    """Moments of one (N, d) sample set, in float64."""
    acc = MomentAccumulator(activations.shape[-1], with_gradients=gradients is not None)
    acc.update(activations, gradients)
    return acc.moments()
