"""FitNets (Romero et al., ICLR 2015): the student regresses the teacher map through a 1×1 conv."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..taps import align
from .base import LayerPair, register_method
from .layerwise import LayerwiseMethod


def hint_loss(regressed: Tensor, teacher_map: Tensor) -> Tensor:
    """FitNets hint loss: ``mean((r(S) − T)²)`` over batch, channels and positions."""
    return (regressed - teacher_map).pow(2).mean()


@register_method
class FitNet(LayerwiseMethod):
    """Single-stage FitNets: per pair a training-only 1×1 conv regressor k → d (with bias),
    optionally followed by a ReLU (``relu: true``), applied to the aligned student map."""

    name = "fitnet"
    description = "FitNets: 1×1 conv regressor k→d (optional ReLU) fits the teacher map, MSE"
    hparams = {**LayerwiseMethod.hparams, "relu": False}

    def __init__(self, pairs: Sequence[LayerPair], **options: Any):
        super().__init__(pairs, **options)
        self.regressors = nn.ModuleList(
            nn.Sequential(nn.Conv2d(p.student_channels, p.teacher_channels, kernel_size=1),
                          *([nn.ReLU()] if self.options["relu"] else []))
            for p in self.pairs
        )

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        teacher_map, student_map = align(teacher_map, student_map)
        return hint_loss(self.regressors[index](student_map), teacher_map)
