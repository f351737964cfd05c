"""Subspace bases from moments: the SubDistill matrix and the ablation bases (pure functions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import BasisError
from ..registry import Registry
from .moments import Moments, moments_of


@dataclass
class Basis:
    """An orthonormal basis ``U`` (d × k) of a layer's relevant subspace and its statistics.

    ``mean`` is the activation mean μ, ``eigenvalues`` all d eigenvalues of the method's matrix
    in the order used for selection, ``energy`` the teacher variance the loss normalises by.
    """

    U: Tensor
    mean: Tensor
    energy: float
    eigenvalues: Tensor
    method: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.U.shape[0]

    @property
    def k(self) -> int:
        return self.U.shape[1]

    def project(self, activations: Tensor) -> Tensor:
        """Coordinates ``Uᵀ(a − μ)`` of (..., d) activations, shape (..., k)."""
        U = self.U.to(activations.dtype)
        return (activations - self.mean.to(activations.dtype)) @ U

    def reconstruct(self, activations: Tensor) -> Tensor:
        """Rank-k reconstruction ``μ + U Uᵀ(a − μ)`` of (..., d) activations."""
        U = self.U.to(activations.dtype)
        return self.mean.to(activations.dtype) + self.project(activations) @ U.T


def subdistill_matrix(moments: Moments) -> Tensor:
    """The SubDistill matrix ``M = Σac + Σacᵀ + 2αΣa + (2/α)Σc`` with α = sqrt(tr Σc / tr Σa).

    M is positive semi-definite and its eigenvectors do not change when activations or
    gradients are rescaled.
    """
    tr_a = torch.trace(moments.cov_a)
    tr_c = torch.trace(moments.cov_c)
    if tr_a <= 0 or tr_c <= 0:
        raise BasisError(
            "cannot build the SubDistill matrix: the activations or the gradients are constant "
            f"(trace of Σa = {tr_a.item():.3g}, of Σc = {tr_c.item():.3g}); "
            "check that the layer influences the teacher's logits (in a ViT, the patch tokens "
            "of the last block do not: only its class token reaches the head)"
        )
    alpha = torch.sqrt(tr_c / tr_a)
    sym = moments.cov_ac + moments.cov_ac.T
    return sym + 2 * alpha * moments.cov_a + (2 / alpha) * moments.cov_c


def _sorted_eigh(matrix: Tensor, by_abs: bool = False) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending, by value or |value|) and matching eigenvectors, float64."""
    values, vectors = torch.linalg.eigh(matrix.to(torch.float64))
    order = torch.argsort(values.abs() if by_abs else values, descending=True, stable=True)
    return values[order], vectors[:, order]


def fix_signs(U: Tensor) -> Tensor:
    """Deterministic sign convention: each column's entry of largest magnitude is positive."""
    idx = U.abs().argmax(dim=0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1])])
    signs[signs == 0] = 1
    return U * signs


def check_k(k: int | None, d: int) -> int:
    """``k`` (``d`` when None) after checking 1 ≤ k ≤ d."""
    if k is None:
        return d
    if not 1 <= k <= d:
        raise BasisError(
            f"cannot keep k={k} directions of a {d}-dimensional layer: k must be between 1 and "
            f"{d}. Pair this teacher layer with a student layer of at most {d} channels, "
            "or choose a wider teacher layer."
        )
    return k


Eigen = Callable[[Moments, int], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class BasisRule:
    """How a basis method ranks directions: ``eigen(moments, seed)`` gives all d values (in
    selection order) and the matching d×d orthonormal vectors; ``fix_signs``: make the signs
    deterministic (not for random or fixed bases)."""

    description: str
    eigen: Eigen
    fix_signs: bool = True


BASIS_METHODS: Registry[BasisRule] = Registry("basis method", BasisError)


def register_basis(name: str, description: str, eigen: Eigen, fix_signs: bool = True) -> BasisRule:
    """Register basis method ``name`` (see :class:`BasisRule`)."""
    return BASIS_METHODS.register(name, BasisRule(description, eigen, fix_signs))


def _haar(moments: Moments, seed: int) -> tuple[Tensor, Tensor]:
    d = moments.dim
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return torch.zeros(d, dtype=torch.float64), q * torch.sign(torch.diagonal(r))  # Haar


register_basis("subdistill", "eigenvectors of the PSD matrix Σac+Σacᵀ+2αΣa+(2/α)Σc (the "
               "paper's method)", lambda m, seed: _sorted_eigh(subdistill_matrix(m)))
register_basis("pca", "eigenvectors of the activation covariance Σa",
               lambda m, seed: _sorted_eigh(m.cov_a))
register_basis("gradpca", "eigenvectors of the gradient second moment Σc",
               lambda m, seed: _sorted_eigh(m.cov_c))
register_basis("prca", "eigenvectors of Σac+Σacᵀ, sorted by signed eigenvalue",
               lambda m, seed: _sorted_eigh(m.cov_ac + m.cov_ac.T))
register_basis("prca-abs", "eigenvectors of Σac+Σacᵀ, sorted by absolute eigenvalue",
               lambda m, seed: _sorted_eigh(m.cov_ac + m.cov_ac.T, by_abs=True))
register_basis("random", "a Haar-random orthonormal basis (seeded)", _haar, fix_signs=False)
register_basis("identity", "the first k coordinate axes",
               lambda m, seed: (torch.zeros(m.dim, dtype=torch.float64),
                                torch.eye(m.dim, dtype=torch.float64)), fix_signs=False)


def basis_from_moments(
    moments: Moments,
    method: str = "subdistill",
    k: int | None = None,
    seed: int = 0,
    energy_cov: Tensor | None = None,
) -> Basis:
    """Rank the directions of ``moments`` by basis ``method`` and keep the top ``k``.

    ``energy_cov`` is the covariance (about ``moments.mean``) of the activations that the loss
    actually compares (e.g. after pooling); by default ``moments.cov_a``. The energy is
    ``Σ_{i≤k} uᵢᵀ Σ uᵢ``.
    """
    rule = BASIS_METHODS.get(method)
    k = check_k(k, moments.dim)
    values, vectors = rule.eigen(moments, seed)
    U = fix_signs(vectors[:, :k]) if rule.fix_signs else vectors[:, :k]
    cov = moments.cov_a if energy_cov is None else energy_cov.to(torch.float64)
    energy = float(torch.einsum("ik,ij,jk->", U, cov, U))
    return Basis(U=U.contiguous(), mean=moments.mean.clone(), energy=energy,
                 eigenvalues=values, method=method)


def relevant_basis(
    activations: Tensor,
    gradients: Tensor,
    method: str = "subdistill",
    k: int | None = None,
    seed: int = 0,
) -> Basis:
    """Relevant subspace of a layer from sampled activations and gradients, both (N, d).

    ``gradients`` are the gradients of the explained scalar (the teacher's top-1 minus
    runner-up logit) with respect to the activations. ``k`` defaults to d.
    """
    if activations.ndim != 2 or activations.shape != gradients.shape:
        raise BasisError(
            "activations and gradients must both have shape (N, d); got "
            f"{tuple(activations.shape)} and {tuple(gradients.shape)}"
        )
    return basis_from_moments(moments_of(activations, gradients), method, k, seed)
