"""VkD (Miles, Elezi, Deng, "VkD: Improving Knowledge Distillation using Orthogonal Projections",
CVPR 2024): an orthogonal projection of the pooled student feature regresses the normalised
pooled teacher feature."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from .base import register_method
from .layerwise import LayerwiseMethod


def vkd_loss(projected_student: Tensor, teacher_features: Tensor) -> Tensor:
    """``smooth_L1(P s̄, LN(t̄))`` averaged over elements, with LN a layer norm without affine
    over the d channels of the pooled teacher feature t̄ (B, d); ``projected_student`` is P s̄."""
    target = F.layer_norm(teacher_features, teacher_features.shape[-1:])
    return F.smooth_l1_loss(projected_student, target)


@register_method
class VkD(LayerwiseMethod):
    name = "vkd"
    description = ("orthogonal projection k→d of the pooled student feature onto the "
                   "layer-normed teacher's (+ KD)")
    hparams = {**LayerwiseMethod.hparams}
    published_lambda = 100.0  # the SubDistill authors' shared λ (their baseline runs)

    def __init__(self, pairs, **options):
        super().__init__(pairs, **options)
        # weight (d, k): orthonormal columns (WᵀW = I) when k ≤ d, orthonormal rows when k > d.
        # matrix_exp, not torch's non-square default "householder", which multiplies by the
        # int-cast diagonal of the raw parameter: any weight decay zeroes the whole weight.
        self.heads = nn.ModuleList(
            orthogonal(nn.Linear(p.student_channels, p.teacher_channels, bias=False),
                       orthogonal_map="matrix_exp")
            for p in self.pairs
        )

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        projected = self.heads[index](student_map.mean(dim=(2, 3)))
        return vkd_loss(projected, teacher_map.mean(dim=(2, 3)))
