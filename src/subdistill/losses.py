"""Loss functions of the distillation methods, as pure functions of tensors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton KD: ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return temperature**2 * kl


def subspace_loss(prediction: Tensor, target: Tensor, energy: float | Tensor = 1.0) -> Tensor:
    """SubDistill layer loss: squared error summed over the k coordinates (dim 1), averaged
    over the batch and positions, divided by the captured teacher energy."""
    positions = prediction.numel() // max(prediction.shape[1], 1)
    return F.mse_loss(prediction, target, reduction="sum") / positions / energy
