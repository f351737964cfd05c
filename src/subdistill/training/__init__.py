"""The training loop, evaluation, optimisers and run directories."""

from .evaluate import accuracy
from .trainer import DistillResult, NonFiniteLossError, TrainConfig, distill, seed_everything

__all__ = ["DistillResult", "NonFiniteLossError", "TrainConfig", "accuracy", "distill",
           "seed_everything"]
