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
    from .data.subtask import Subtask as Subtask
    from .errors import SubdistillError as SubdistillError
    from .models.restricted import restrict_teacher as restrict_teacher
    from .subspace import Basis as Basis
    from .subspace import relevant_basis as relevant_basis
    from .subspace.fit import fit_subspaces as fit_subspaces
    from .taps import LayerTaps as LayerTaps
    from .training import DistillResult as DistillResult
    from .training import TrainConfig as TrainConfig
    from .training import distill as distill
