"""Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022), on the logits.

As published and in mdistiller: ``ce_weight · CE + min(progress / warmup, 1) · (α·TCKD + β·NCKD)``
with mdistiller's CIFAR settings (α = 1, β = 8, T = 4, CE weight 1, a linear warm-up over 20 of
240 epochs) as defaults; the warm-up is a fraction of the run, so it scales with its epochs.
The SubDistill authors' variant is ``temperature: 1, ce_weight: 0, warmup: 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DistillMethod, StepOutputs, register_method


def _non_target(x: Tensor, labels: Tensor) -> Tensor:
    """The (B, C−1) entries of ``x`` without each row's label column."""
    keep = torch.ones_like(x, dtype=torch.bool).scatter_(1, labels[:, None], False)
    return x[keep].view(x.shape[0], -1)


def _binary_log_probs(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """``log [b^target, b^non-target]`` (B, 2) of ``softmax(z/T)``, computed in log space."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    target = log_p.gather(1, labels[:, None])
    others = _non_target(log_p, labels).logsumexp(dim=1, keepdim=True)
    return torch.cat([target, others], dim=1)


def tckd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
              temperature: float = 1.0) -> Tensor:
    """Target-class KD: ``T² · KL(b_t ‖ b_s)`` on the binary (target, non-target) probabilities
    of ``softmax(z/T)``, averaged over the batch."""
    kl = F.kl_div(_binary_log_probs(student_logits, labels, temperature),
                  _binary_log_probs(teacher_logits, labels, temperature),
                  log_target=True, reduction="batchmean")
    return temperature**2 * kl


def nckd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
              temperature: float = 1.0) -> Tensor:
    """Non-target-class KD: ``T² · KL(p̂_t ‖ p̂_s)`` with p̂ the softmax of z/T over the non-target
    classes (the target column removed, the exact form of the authors' −1000 masking),
    averaged over the batch."""
    log_s = F.log_softmax(_non_target(student_logits, labels) / temperature, dim=1)
    log_t = F.log_softmax(_non_target(teacher_logits, labels) / temperature, dim=1)
    return temperature**2 * F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")


def warmup_factor(progress: float, warmup: float) -> float:
    """mdistiller's ``min(epoch / warmup_epochs, 1)`` with both as fractions of the run
    (``progress`` = epoch / epochs, the epoch counted from 1); 1 without warm-up."""
    return min(progress / warmup, 1.0) if warmup > 0 else 1.0


@register_method
class DKD(DistillMethod):
    name = "dkd"
    description = ("decoupled KD on the subtask logits: CE + warm-up · (α·TCKD + β·NCKD) "
                   "(uses the labels)")
    hparams = {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0,
               "warmup": 20 / 240}

    def __init__(self, pairs=(), **options):
        super().__init__(pairs, **options)

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        args = (outputs.student_logits, outputs.needed_teacher_logits(), outputs.labels,
                self.options["temperature"])
        ramp = warmup_factor(outputs.progress, self.options["warmup"])
        terms = {"tckd": ramp * self.options["alpha"] * tckd_loss(*args),
                 "nckd": ramp * self.options["beta"] * nckd_loss(*args)}
        if self.options["ce_weight"]:
            terms["ce"] = self.options["ce_weight"] * F.cross_entropy(outputs.student_logits,
                                                                      outputs.labels)
        return terms
