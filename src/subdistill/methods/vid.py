"""Variational Information Distillation (Ahn et al., CVPR 2019): Gaussian likelihood of the
teacher map given the student map, with a learned per-channel variance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import channel_squared_error
from ..taps import align
from .base import LayerPair, register_method
from .layerwise import LayerwiseMethod

VARIANCE_EPS = 1e-5


def vid_loss(mean: Tensor, variance: Tensor, teacher_map: Tensor) -> Tensor:
    """Gaussian negative log-likelihood without the constant ``½ log 2π``, averaged (not
    summed) over batch, channels and positions as in the authors' code:
    ``mean(½ · ((T − μ(S))² / σ²_c + log σ²_c))``, ``variance`` being the (C,) σ²."""
    positions = mean.numel() // mean.shape[1]
    squared_error = channel_squared_error(mean, teacher_map)  # Σ over batch and positions
    return 0.5 * (squared_error / (positions * variance) + variance.log()).mean()


class VIDHead(nn.Module):
    """Training-only head of one pair: regressor μ (1×1 convs k → d → d → d, ReLU between,
    no bias, as in the authors' code; run on channels-last maps) and per-channel variance
    ``σ² = softplus(α) + eps``."""

    def __init__(self, student_channels: int, teacher_channels: int, init_variance: float):
        super().__init__()
        d = teacher_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(student_channels, d, kernel_size=1, bias=False), nn.ReLU(),
            nn.Conv2d(d, d, kernel_size=1, bias=False), nn.ReLU(),
            nn.Conv2d(d, d, kernel_size=1, bias=False),
        )
        alpha = math.log(math.expm1(init_variance - VARIANCE_EPS))  # softplus⁻¹
        self.alpha = nn.Parameter(torch.full((d,), alpha))

    @property
    def variance(self) -> Tensor:
        """Per-channel variance σ², shape (d,)."""
        return F.softplus(self.alpha) + VARIANCE_EPS

    def forward(self, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        teacher_map, student_map = align(teacher_map, student_map)
        # oneDNN's 1×1 convolutions run several times faster on channels-last maps than on NCHW
        mean = self.regressor(student_map.contiguous(memory_format=torch.channels_last))
        return vid_loss(mean, self.variance, teacher_map)


@register_method
class VID(LayerwiseMethod):
    """VID with the variance registered as a parameter: it moves with ``.to()`` and is learned
    (the reference code never registered it, so it stayed at its initial value)."""

    name = "vid"
    description = "VID: Gaussian NLL of the teacher map given the student, learned variance"
    hparams = {**LayerwiseMethod.hparams, "init_variance": 5.0}
    published_lambda = 1.0  # the feature weight of RepDistiller and mdistiller

    def __init__(self, pairs: Sequence[LayerPair], **options: Any):
        super().__init__(pairs, **options)
        init = self.options["init_variance"]
        if not init > VARIANCE_EPS:
            raise ConfigError(f"method vid: init_variance must be > {VARIANCE_EPS}, got {init}")
        self.heads = nn.ModuleList(
            VIDHead(p.student_channels, p.teacher_channels, init) for p in self.pairs
        )

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        return self.heads[index](teacher_map, student_map)
