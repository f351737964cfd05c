"""The training loop, evaluation, optimisers and run directories."""

from .evaluate import accuracy
from .trainer import DistillResult, TrainConfig, distill, seed_everything

__all__ = ["DistillResult", "TrainConfig", "accuracy", "distill", "seed_everything"]
