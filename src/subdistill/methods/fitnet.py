"""FitNets (Romero et al., ICLR 2015): the student regresses the teacher map through a 1×1 conv."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from torch import Tensor, nn

from ..losses import linear_fit_loss
from ..taps import align
from .base import LayerPair, register_method
from .layerwise import LayerwiseMethod

REDUCTIONS = ("channel-mean", "channel-sum")


def hint_loss(regressed: Tensor, teacher_map: Tensor, reduction: str = "channel-mean") -> Tensor:
    """FitNets hint loss: ``mean((r(S) − T)²)`` over batch, channels and positions
    (``channel-mean``, mdistiller's MSE), or summed over the channels and averaged over batch
    and positions (``channel-sum``, the SubDistill authors' code: d times larger)."""
    squared = (regressed - teacher_map).pow(2)
    if reduction == "channel-sum":
        return squared.sum(dim=1).mean()
    return squared.mean()


@register_method
class FitNet(LayerwiseMethod):
    """Single-stage FitNets: per pair a training-only 1×1 conv regressor k → d (with bias),
    optionally followed by a ReLU (``relu: true``), applied to the aligned student map."""

    name = "fitnet"
    description = "FitNets: 1×1 conv regressor k→d (optional ReLU) fits the teacher map, MSE"
    hparams = {**LayerwiseMethod.hparams, "relu": False, "reduction": "channel-mean"}
    choices = {**LayerwiseMethod.choices, "reduction": lambda: REDUCTIONS}
    published_lambda = 100.0  # mdistiller's hint weight, with the channel-mean MSE

    def __init__(self, pairs: Sequence[LayerPair], **options: Any):
        super().__init__(pairs, **options)
        self.regressors = nn.ModuleList(
            nn.Sequential(nn.Conv2d(p.student_channels, p.teacher_channels, kernel_size=1),
                          *([nn.ReLU()] if self.options["relu"] else []))
            for p in self.pairs
        )

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        """The hint loss; without the ReLU, in training computed from moments
        (:func:`~subdistill.losses.linear_fit_loss`), which spares forming the d-channel
        regressed map."""
        teacher_map, student_map = align(teacher_map, student_map)
        regressor = cast(nn.Sequential, self.regressors[index])
        if self.training and not self.options["relu"]:
            conv = cast(nn.Conv2d, regressor[0])
            return linear_fit_loss(teacher_map, student_map, conv.weight[:, :, 0, 0], conv.bias,
                                   self.options["reduction"])
        return hint_loss(regressor(student_map), teacher_map, self.options["reduction"])
