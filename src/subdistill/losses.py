"""Loss functions of the distillation methods, as pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .taps import add_channel_matmul_, channel_cross


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


def subspace_loss_from_moments(cross: Tensor, norm_sq: Tensor, target_sq: Tensor,
                               rotation: Tensor, scale: Tensor | float, positions: int,
                               energy: float | Tensor = 1.0) -> Tensor:
    """:func:`subspace_loss` of the prediction ``s · Q · n`` for an orthogonal ``Q``, from
    moments instead of maps: ``Σ‖sQn − t‖² = s²·Σ‖n‖² − 2s·⟨Q, Σ t nᵀ⟩ + Σ‖t‖²`` (sums over
    the batch and the ``positions``; ``‖Qn‖ = ‖n‖``). ``cross`` is ``Σ t nᵀ`` (k × k, target
    coordinate × student channel), ``norm_sq`` is ``Σ‖n‖²``, ``target_sq`` is ``Σ‖t‖²``."""
    squared_error = scale**2 * norm_sq - 2 * scale * (rotation * cross).sum() + target_sq
    return squared_error / positions / energy


class _ChannelMoments(torch.autograd.Function):
    """Forward: :func:`channel_moments`; backward: one elementwise pass and one matrix
    product (autograd through the same sums would make several passes over the map)."""

    @staticmethod
    def forward(ctx, raw: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(raw, x)
        return channel_cross(raw, x), x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3))

    @staticmethod
    def backward(ctx, grad_cross: Tensor, grad_sums: Tensor,
                 grad_squares: Tensor) -> tuple[None, Tensor]:
        raw, x = ctx.saved_tensors
        grad = torch.addcmul(grad_sums[:, None, None].expand_as(x), x,
                             2 * grad_squares[:, None, None])
        return None, add_channel_matmul_(grad, raw, grad_cross)


def channel_moments(raw: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(Σ r xᵀ, Σ x, Σ x²)`` over the batch and positions of maps ``r`` (B, j, H, W; no
    gradient) and ``x`` (B, c, H, W): the (j × c) cross moment and x's per-channel sums and
    sums of squares, differentiable in ``x``."""
    return _ChannelMoments.apply(raw.detach(), x)
