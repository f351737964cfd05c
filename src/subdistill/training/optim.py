"""Optimisers and learning-rate schedules, found by name.

An optimiser is ``build(params, lr, weight_decay, momentum) -> Optimizer``; a schedule is
``factor(epoch, epochs, step_size, gamma) -> float``, the learning-rate multiplier of 0-based
``epoch`` of ``epochs`` (both counted after the warm-up). A schedule followed batch by batch
(``train.lr_per_step``) gets counts of batches instead: ``epoch`` is the batch, ``epochs`` the
batches and ``step_size`` converted to batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..registry import Registry

# params: the parameters, or parameter groups (dicts, with ``train.norm_bias_lr_scale``)
OptimizerBuilder = Callable[[Iterable[Any], float, float, float], torch.optim.Optimizer]
ScheduleFactor = Callable[[int, int, int, float], float]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFactor] = Registry("schedule")


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    """Register ``build(params, lr, weight_decay, momentum) -> Optimizer`` as ``name``
    (``params``: the parameters, or parameter groups with ``train.norm_bias_lr_scale``, as
    torch optimisers take them)."""
    return OPTIMIZERS.register(name)


def register_schedule(name: str) -> Callable[[ScheduleFactor], ScheduleFactor]:
    """Register ``factor(epoch, epochs, step_size, gamma) -> multiplier`` as ``name``."""
    return SCHEDULES.register(name)


@register_optimizer("adamw")
def _adamw(params: Iterable[Any], lr: float, weight_decay: float,
           momentum: float) -> torch.optim.Optimizer:
    """AdamW, the paper's choice (``momentum`` is not used)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("sgd")
def _sgd(params: Iterable[Any], lr: float, weight_decay: float,
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


# batch (and sync-batch, instance) norms share _NormBase
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(modules: Sequence[nn.Module], lr: float, weight_decay: float,
                     norm_bias_lr_scale: float = 1.0) -> list[nn.Parameter] | list[dict]:
    """The parameters of ``modules``, for the optimiser: a plain list, or with
    ``norm_bias_lr_scale`` other than 1 two groups, the normalisation layers' shifts (batch,
    group and layer norms' biases) in the second, whose learning rate is ``lr × scale`` and
    whose weight decay is divided by the scale, so that their decay per step stays that of the
    other weights (the fast CIFAR-10 recipes' "scaled batch-norm biases")."""
    norm_biases = {id(m.bias) for module in modules for m in module.modules()
                   if isinstance(m, NORMS) and isinstance(m.bias, nn.Parameter)}
    params = [p for module in modules for p in module.parameters()]
    if norm_bias_lr_scale == 1.0 or not norm_biases:
        return params
    shifts: dict[str, Any] = {"params": [p for p in params if id(p) in norm_biases],
                              "lr": lr * norm_bias_lr_scale,
                              "weight_decay": weight_decay / norm_bias_lr_scale}
    return [{"params": [p for p in params if id(p) not in norm_biases]}, shifts]


def build_optimizer(params: Iterable[nn.Parameter] | Iterable[dict], name: str, lr: float,
                    weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """The optimiser ``name`` (``adamw``, ``sgd`` or a registered one) over ``params`` (or
    parameter groups, see :func:`parameter_groups`)."""
    return OPTIMIZERS.get(name)(params, lr, weight_decay, momentum)


def schedule_factor(name: str, epoch: int, epochs: int, step_size: int, gamma: float,
                    warmup_epochs: int = 0, steps_per_epoch: int = 1) -> float:
    """Learning-rate multiplier for 0-based ``epoch``: a linear warm-up over ``warmup_epochs``
    (epoch e gets (e+1)/(warmup+1)), then schedule ``name`` over the remaining epochs (step:
    ×gamma every step_size epochs; cosine or linear to 0; constant). With ``steps_per_epoch``
    above 1, ``epoch`` counts batches and the same schedule is followed batch by batch (the
    warm-up and ``step_size`` still given in epochs)."""
    factor = SCHEDULES.get(name)
    warmup = warmup_epochs * steps_per_epoch
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    return factor(epoch - warmup, epochs * steps_per_epoch - warmup, step_size * steps_per_epoch,
                  gamma)


def build_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int, step_size: int,
                   gamma: float, warmup_epochs: int = 0,
                   steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """Schedule following :func:`schedule_factor`, for a caller stepping it once per epoch,
    or once per batch with ``steps_per_epoch`` (the batches of an epoch) above 1."""
    SCHEDULES.get(name)  # an unknown name fails here
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: schedule_factor(name, epoch, epochs, step_size, gamma,
                                                 warmup_epochs, steps_per_epoch))
