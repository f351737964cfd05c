"""Relevant-subspace estimation: moments, bases, the streaming fit and basis files."""

from .basis import BASIS_METHODS, Basis, basis_from_moments, register_basis, relevant_basis, subdistill_matrix
from .moments import MomentAccumulator, Moments, moments_of

__all__ = [
    "BASIS_METHODS",
    "Basis",
    "MomentAccumulator",
    "Moments",
    "basis_from_moments",
    "register_basis",
    "moments_of",
    "relevant_basis",
    "subdistill_matrix",
]
