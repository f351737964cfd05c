"""A small MobileNetV2-like student for small images.

Layout: ``stem`` (3x3 conv-BN-ReLU6, stride 1), ``stages.0`` ... (inverted residual blocks
``stages.0.0`` with ``expand``, ``depthwise``, ``project``), ``fc``. The first stage keeps the
input resolution (32px inputs); every later stage halves it. No operation is in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subdistill.errors import ModelError
from subdistill.models.cifar_resnet import check_width, stage_blocks
from subdistill.models.registry import register_model, reject_pretrained

__all__ = ["ConvBN", "InvertedResidual", "MobileStudent", "mobile_student"]


class ConvBN(nn.Sequential):
    """Conv (no bias) followed by BatchNorm and, if ``activation``, ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, out_channels, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileStudent(nn.Module):
    """Stem, stages of inverted residual blocks (stride 1 first, then 2), pool, linear."""

    def __init__(
        self,
        widths: Sequence[int],
        blocks_per_stage: int | Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        expansion: int = 4,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        blocks_per_stage = stage_blocks(blocks_per_stage, widths)
        if not 1 <= expansion <= 64:
            raise ModelError(f"expansion must be between 1 and 64, got {expansion}.")
        channels = widths[0] if stem_width is None else check_width("stem_width", stem_width)
        self.stem = ConvBN(in_channels, channels, 3)
        stages = []
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [InvertedResidual(channels, width, stride, expansion)]
            stage += [InvertedResidual(width, width, 1, expansion) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("mobile_student")
def mobile_student(
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    widths: Sequence[int] = (16, 32, 64),
    expansion: int = 4,
    blocks_per_stage: int | Sequence[int] = 2,
    stem_width: int | None = None,
) -> MobileStudent:
    """MobileNet-like student; ``blocks_per_stage`` is one count or one per stage."""
    reject_pretrained("mobile_student", pretrained)
    return MobileStudent(widths, blocks_per_stage, num_classes, in_channels, expansion, stem_width)
