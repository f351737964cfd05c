"""Similarity-preserving KD (Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import register_method
from .layerwise import LayerwiseMethod


def similarity_matrix(features: Tensor) -> Tensor:
    """Row-L2-normalised batch Gram matrix ``G̃ = normalize(A Aᵀ)`` of A = features (B, C·H·W)."""
    flat = features.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


def spkd_loss(teacher_map: Tensor, student_map: Tensor) -> Tensor:
    """``‖G̃_t − G̃_s‖²_F / B²``: the squared Frobenius norm, as in the SPKD paper (the reference
    code used the non-squared norm). The maps' shapes may differ; only the batch size must match."""
    batch = student_map.shape[0]
    diff = similarity_matrix(teacher_map) - similarity_matrix(student_map)
    return diff.pow(2).sum() / batch**2


@register_method
class SPKD(LayerwiseMethod):
    name = "spkd"
    description = "similarity-preserving KD: match row-normalised batch Gram matrices per pair (+ KD)"
    hparams = {**LayerwiseMethod.hparams}
    published_lambda = 3000.0  # γ of the SPKD paper, RepDistiller and mdistiller

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        return spkd_loss(teacher_map, student_map)
