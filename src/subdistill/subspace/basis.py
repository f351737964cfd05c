"""Subspace bases from moments: the SubDistill matrix and the ablation bases (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import BasisError, closest
from .moments import Moments, moments_of

BASIS_METHODS: dict[str, str] = {
    "subdistill": "eigenvectors of the PSD matrix Σac+Σacᵀ+2αΣa+(2/α)Σc (the paper's method)",
    "pca": "eigenvectors of the activation covariance Σa",
    "gradpca": "eigenvectors of the gradient second moment Σc",
    "prca": "eigenvectors of Σac+Σacᵀ, sorted by signed eigenvalue",
    "prca-abs": "eigenvectors of Σac+Σacᵀ, sorted by absolute eigenvalue",
    "random": "a Haar-random orthonormal basis (seeded)",
    "identity": "the first k coordinate axes",
}


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


def basis_from_moments(
    moments: Moments,
    method: str = "subdistill",
    k: int | None = None,
    seed: int = 0,
    energy_cov: Tensor | None = None,
) -> Basis:
    """Eigendecompose the method's matrix built from ``moments`` and keep the top ``k`` vectors.

    ``energy_cov`` is the covariance (about ``moments.mean``) of the activations that the loss
    actually compares (e.g. after pooling); by default ``moments.cov_a``. The energy is
    ``Σ_{i≤k} uᵢᵀ Σ uᵢ``.
    """
    if method not in BASIS_METHODS:
        raise BasisError(f"unknown basis method {method!r}.{closest(method, BASIS_METHODS)} "
                         f"Choose one of: {', '.join(BASIS_METHODS)}")
    d = moments.dim
    k = check_k(k, d)
    if method == "subdistill":
        values, vectors = _sorted_eigh(subdistill_matrix(moments))
    elif method == "pca":
        values, vectors = _sorted_eigh(moments.cov_a)
    elif method == "gradpca":
        values, vectors = _sorted_eigh(moments.cov_c)
    elif method in ("prca", "prca-abs"):
        values, vectors = _sorted_eigh(moments.cov_ac + moments.cov_ac.T, by_abs=method == "prca-abs")
    elif method == "random":
        gen = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        vectors = q * torch.sign(torch.diagonal(r))  # Haar-distributed
        values = torch.zeros(d, dtype=torch.float64)
    else:  # identity
        vectors = torch.eye(d, dtype=torch.float64)
        values = torch.zeros(d, dtype=torch.float64)
    U = vectors[:, :k]
    if method not in ("random", "identity"):
        U = fix_signs(U)
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
