"""subdistill: distil small domain experts from large classifiers by matching relevant subspaces."""

from .errors import SubdistillError
from .subspace import Basis, relevant_basis

__version__ = "0.1.0"

__all__ = ["Basis", "SubdistillError", "__version__", "relevant_basis"]
