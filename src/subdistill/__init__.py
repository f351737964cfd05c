"""subdistill: distil small domain experts from large classifiers by matching relevant subspaces."""

__version__ = "0.1.0"

from .errors import SubdistillError  # noqa: E402
from .subspace import Basis, relevant_basis  # noqa: E402
from .subspace.fit import fit_subspaces  # noqa: E402
from .subtask import Subtask, restrict_teacher  # noqa: E402
from .taps import LayerTaps  # noqa: E402
from .training import DistillResult, TrainConfig, distill  # noqa: E402

__all__ = [
    "Basis",
    "DistillResult",
    "LayerTaps",
    "SubdistillError",
    "Subtask",
    "TrainConfig",
    "__version__",
    "distill",
    "fit_subspaces",
    "relevant_basis",
    "restrict_teacher",
]
