"""Output-only methods: Hinton knowledge distillation and the label-only student."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..losses import kd_loss
from .base import DistillMethod, StepOutputs, register_method


@register_method
class KD(DistillMethod):
    name = "kd"
    description = "Hinton knowledge distillation on the subtask logits, T²·KL only"
    hparams = {"temperature": 4.0}

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        return {"kd": kd_loss(outputs.student_logits, outputs.needed_teacher_logits(),
                              self.options["temperature"])}


@register_method
class StudentOnly(DistillMethod):
    name = "student-only"
    description = "cross-entropy on the labels, no teacher (also trains teachers)"
    needs_teacher = False
    hparams = {"label_smoothing": 0.0}

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(outputs.student_logits, outputs.labels,
                                      label_smoothing=self.options["label_smoothing"])}
