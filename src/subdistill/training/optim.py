"""Optimisers and learning-rate schedules by name."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("step", "cosine", "constant")


def build_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW (the paper's choice) or SGD with Nesterov momentum (a common teacher recipe)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def schedule_factor(name: str, epoch: int, epochs: int, step_size: int, gamma: float,
                    warmup_epochs: int = 0) -> float:
    """Learning-rate multiplier for 0-based ``epoch``: a linear warm-up over ``warmup_epochs``
    (epoch e gets (e+1)/(warmup+1)), then step (×gamma every step_size epochs), cosine to 0
    over the remaining epochs, or constant."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    after = epoch - warmup_epochs
    if name == "step":
        return gamma ** (after // step_size)
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * after / max(epochs - warmup_epochs, 1)))
    if name == "constant":
        return 1.0
    raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def build_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int, step_size: int,
                   gamma: float, warmup_epochs: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule following :func:`schedule_factor`."""
    schedule_factor(name, 0, epochs, step_size, gamma, warmup_epochs)  # reject unknown names
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: schedule_factor(name, epoch, epochs, step_size, gamma,
                                                 warmup_epochs))
