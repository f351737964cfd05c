"""Cross-entropy on the labels plus Hinton KD (Hinton et al., "Distilling the Knowledge in a
Neural Network", 2015), on the logits."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..losses import kd_loss
from .base import DistillMethod, StepOutputs, register_method


@register_method
class CEKD(DistillMethod):
    name = "ce+kd"
    description = "cross-entropy on the labels + Hinton KD on the subtask logits"
    hparams = {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0}

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        return {
            "ce": self.options["ce_weight"] * F.cross_entropy(outputs.student_logits, outputs.labels),
            "kd": self.options["kd_weight"] * kd_loss(outputs.student_logits, outputs.needed_teacher_logits(),
                                                      self.options["temperature"]),
        }
