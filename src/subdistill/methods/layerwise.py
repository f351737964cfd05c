"""Shared recipe of the layer-wise methods: ``T²·KL + λ · Σ_l L_l`` without label cross-entropy."""

from __future__ import annotations

from torch import Tensor

from ..losses import kd_loss
from .base import DistillMethod, StepOutputs


class LayerwiseMethod(DistillMethod):
    """Base of the methods with a per-pair layer term; subclasses implement :meth:`layer_loss`."""

    hparams = {"lambda": 100.0, "temperature": 4.0}
    uses_layers = True

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        """Loss of pair ``index`` on its (B, C, H, W) teacher and student maps."""
        raise NotImplementedError

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        terms = {"kd": kd_loss(outputs.student_logits, outputs.teacher_logits,
                               self.options["temperature"])}
        weight = self.options["lambda"]
        for i, pair in enumerate(self.pairs):
            loss = self.layer_loss(i, outputs.teacher_features[pair.teacher],
                                   outputs.student_features[pair.student])
            terms[f"layer/{pair.teacher}"] = weight * loss
        return terms
