"""Loss functions of the distillation methods, as pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .taps import add_channel_matmul_, channel_cross, channel_matmul


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
    """Forward: :func:`channel_moments`; backward: one elementwise pass (or, for the Gram
    matrix, one more matrix product) and one matrix product (autograd through the same sums
    would make several passes over the map)."""

    @staticmethod
    def forward(ctx, raw: Tensor, x: Tensor, gram: bool) -> tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(raw, x)
        ctx.gram = gram
        second = channel_cross(x, x) if gram else x.square().sum(dim=(0, 2, 3))
        return channel_cross(raw, x), x.sum(dim=(0, 2, 3)), second

    @staticmethod
    def backward(ctx, grad_cross: Tensor, grad_sums: Tensor,
                 grad_second: Tensor) -> tuple[None, Tensor, None]:
        raw, x = ctx.saved_tensors
        if ctx.gram:
            grad = channel_matmul(x, grad_second + grad_second.t()) + grad_sums[:, None, None]
        else:
            grad = torch.addcmul(grad_sums[:, None, None].expand_as(x), x,
                                 2 * grad_second[:, None, None])
        return None, add_channel_matmul_(grad, raw, grad_cross), None


def channel_moments(raw: Tensor, x: Tensor, gram: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``(Σ r xᵀ, Σ x, Σ x²)`` over the batch and positions of maps ``r`` (B, j, H, W; no
    gradient) and ``x`` (B, c, H, W): the (j × c) cross moment and x's per-channel sums and
    sums of squares (``gram=True``: the (c × c) Gram matrix ``Σ x xᵀ`` instead), differentiable
    in ``x``."""
    return _ChannelMoments.apply(raw.detach(), x, gram)


class _ChannelSquaredError(torch.autograd.Function):
    """Forward: :func:`channel_squared_error`; backward: one elementwise pass over the saved
    difference (autograd through the elementwise formula makes several)."""

    @staticmethod
    def forward(ctx, prediction: Tensor, target: Tensor) -> Tensor:
        diff = target - prediction
        ctx.save_for_backward(diff)
        ctx.dtypes = prediction.dtype, target.dtype
        return diff.square().sum(dim=(0, *range(2, diff.ndim)))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        diff, = ctx.saved_tensors
        scaled = diff * (2 * grad).view(1, -1, *([1] * (diff.ndim - 2)))
        wants_prediction, wants_target = ctx.needs_input_grad
        return ((-scaled).to(ctx.dtypes[0]) if wants_prediction else None,
                scaled.to(ctx.dtypes[1]) if wants_target else None)


def channel_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """``Σ (target − prediction)²`` per channel (dim 1) of two maps of one shape, summed over
    the batch and positions; differentiable in both."""
    return _ChannelSquaredError.apply(prediction, target)


def linear_fit_loss(teacher: Tensor, student: Tensor, weight: Tensor, bias: Tensor | None,
                    reduction: str = "channel-mean") -> Tensor:
    """FitNets' hint loss of the linear regressor ``W s + b`` (a 1×1 convolution, ``weight``
    d × k) without forming the regressed map: ``Σ‖Ws + b − T‖² = ⟨WᵀW, Σ s sᵀ⟩ + 2 bᵀW Σ s
    + N‖b‖² − 2⟨W, Σ T sᵀ⟩ − 2 bᵀ Σ T + Σ‖T‖²``, divided by the positions N (``channel-sum``)
    or by N · d (``channel-mean``)."""
    cross, sums, gram = channel_moments(teacher, student, gram=True)
    positions = student.numel() // student.shape[1]
    squared_error = ((weight.t() @ weight) * gram).sum() - 2 * (weight * cross).sum() \
        + torch.linalg.vector_norm(teacher.detach()).square()
    if bias is not None:
        squared_error = squared_error + 2 * bias @ (weight @ sums) \
            + positions * bias.square().sum() - 2 * bias @ teacher.detach().sum(dim=(0, 2, 3))
    denominator = positions * (weight.shape[0] if reduction == "channel-mean" else 1)
    return squared_error / denominator
