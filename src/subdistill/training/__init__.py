"""The training loop (:func:`distill`) and its parts: settings (:mod:`.config`), set-up
(:mod:`.setup`), state (:mod:`.state`), run files (:mod:`.run_files`), epochs
(:mod:`.epoch`), scoring (:mod:`.scoring`), evaluation, optimisers, calibration and the
teacher cache. The names below are imported on first use."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {"DistillResult": ".scoring", "TrainConfig": ".config", "accuracy": ".evaluate",
            "distill": ".trainer", "seed_everything": ".trainer"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .config import TrainConfig as TrainConfig
    from .evaluate import accuracy as accuracy
    from .scoring import DistillResult as DistillResult
    from .trainer import distill as distill
    from .trainer import seed_everything as seed_everything
