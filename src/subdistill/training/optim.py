"""Optimisers and learning-rate schedules, found by name.

An optimiser is ``build(params, lr, weight_decay, momentum) -> Optimizer``; a schedule is
``factor(epoch, epochs, step_size, gamma) -> float``, the learning-rate multiplier of 0-based
``epoch`` of ``epochs`` (both counted after the warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..registry import Registry

OptimizerBuilder = Callable[[Iterable[nn.Parameter], float, float, float], torch.optim.Optimizer]
ScheduleFactor = Callable[[int, int, int, float], float]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFactor] = Registry("schedule")


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    """Register ``build(params, lr, weight_decay, momentum) -> Optimizer`` as ``name``."""
    return OPTIMIZERS.register(name)


def register_schedule(name: str) -> Callable[[ScheduleFactor], ScheduleFactor]:
    """Register ``factor(epoch, epochs, step_size, gamma) -> multiplier`` as ``name``."""
    return SCHEDULES.register(name)


@register_optimizer("adamw")
def _adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float,
           momentum: float) -> torch.optim.Optimizer:
    """AdamW, the paper's choice (``momentum`` is not used)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("sgd")
def _sgd(params: Iterable[nn.Parameter], lr: float, weight_decay: float,
         momentum: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (plain SGD at momentum 0), a common teacher recipe."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=momentum > 0)


@register_schedule("step")
def _step(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    return gamma ** (epoch // step_size)


@register_schedule("cosine")
def _cosine(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


@register_schedule("linear")
def _linear(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    """Straight down to 0 (after a warm-up: the triangular schedule of fast CIFAR recipes)."""
    return 1.0 - epoch / max(epochs, 1)


@register_schedule("constant")
def _constant(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    return 1.0


def build_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """The optimiser ``name`` (``adamw``, ``sgd`` or a registered one) over ``params``."""
    return OPTIMIZERS.get(name)(params, lr, weight_decay, momentum)


def schedule_factor(name: str, epoch: int, epochs: int, step_size: int, gamma: float,
                    warmup_epochs: int = 0) -> float:
    """Learning-rate multiplier for 0-based ``epoch``: a linear warm-up over ``warmup_epochs``
    (epoch e gets (e+1)/(warmup+1)), then schedule ``name`` over the remaining epochs (step:
    ×gamma every step_size epochs; cosine or linear to 0; constant)."""
    factor = SCHEDULES.get(name)
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    return factor(epoch - warmup_epochs, epochs - warmup_epochs, step_size, gamma)


def build_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int, step_size: int,
                   gamma: float, warmup_epochs: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule following :func:`schedule_factor`."""
    SCHEDULES.get(name)  # an unknown name fails here
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: schedule_factor(name, epoch, epochs, step_size, gamma,
                                                 warmup_epochs))
