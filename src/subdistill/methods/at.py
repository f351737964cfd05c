"""Attention Transfer (Zagoruyko & Komodakis, ICLR 2017): match normalised spatial attention."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..taps import align
from .base import register_method
from .layerwise import LayerwiseMethod


def attention_map(features: Tensor) -> Tensor:
    """Spatial attention ``q = Q / ‖Q‖₂`` with ``Q = mean_c F_c²`` (p = 2), flattened over
    the positions: (B, C, H, W) → (B, H·W), each row of unit L2 norm."""
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), dim=1)


def attention_loss(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """``mean_{b, j} (q_s[b, j] − q_t[b, j])²`` over batch and positions.

    The paper writes ``β/2 · ‖q_s − q_t‖₂`` per sample (a norm, not squared); the authors'
    code, and this function, take the mean squared difference instead (the spec's baseline);
    the uncalibrated weight is β = 1000, as in RepDistiller and mdistiller.
    """
    return (attention_map(student_map) - attention_map(teacher_map)).pow(2).mean()


@register_method
class AT(LayerwiseMethod):
    """Attention transfer on the aligned maps; the channel widths need not match, no parameters."""

    name = "at"
    description = "attention transfer: L2-normalised maps mean_c(F²), mean squared difference"
    hparams = {**LayerwiseMethod.hparams}
    published_lambda = 1000.0  # β of RepDistiller / mdistiller

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        teacher_map, student_map = align(teacher_map, student_map)
        return attention_loss(student_map, teacher_map)
