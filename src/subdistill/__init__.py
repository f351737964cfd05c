"""subdistill: distil small domain experts from large classifiers by matching relevant subspaces.

The names below are imported on first use (``import subdistill`` stays fast).
"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Basis": ".subspace",
    "DistillResult": ".training",
    "LayerTaps": ".taps",
    "SubdistillError": ".errors",
    "Subtask": ".data.subtask",
    "TrainConfig": ".training",
    "distill": ".training",
    "fit_subspaces": ".subspace.fit",
    "relevant_basis": ".subspace",
    "restrict_teacher": ".models.restricted",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .data.subtask import Subtask
    from .errors import SubdistillError
    from .models.restricted import restrict_teacher
    from .subspace import Basis, relevant_basis
    from .subspace.fit import fit_subspaces
    from .taps import LayerTaps
    from .training import DistillResult, TrainConfig, distill
