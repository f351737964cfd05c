"""CIFAR-style ResNets (3x3 stem, no max-pool) with stable, tap-friendly module names.

Layout: ``conv1``, ``bn1``, ``layer1`` ... ``layerN`` (blocks ``layer1.0`` with ``conv1``,
``bn1``, ``conv2``, ``bn2`` and optional ``downsample``), ``fc``. No operation is in place, so
a forward hook on any module sees its output unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subdistill.errors import ModelError
from subdistill.models.registry import register_model, reject_pretrained

__all__ = ["BasicBlock", "CifarResNet", "check_width", "cifar_resnet", "stage_blocks"]


MAX_BLOCKS = 1000  # per stage: ResNet-1202 has 200
MAX_WIDTH = 65536


def check_width(name: str, width: int) -> int:
    """``width`` after checking 1 <= width <= :data:`MAX_WIDTH`."""
    if not 1 <= width <= MAX_WIDTH:
        raise ModelError(f"{name} must be between 1 and {MAX_WIDTH}, got {width}.")
    return width


def stage_blocks(blocks_per_stage: int | Sequence[int], widths: Sequence[int]) -> list[int]:
    """Validated block count per stage; a single int applies to every stage."""
    if isinstance(blocks_per_stage, int):
        blocks_per_stage = [blocks_per_stage] * len(widths)
    blocks = list(blocks_per_stage)
    if not widths or len(blocks) != len(widths):
        raise ModelError(
            f"Need one block count per stage width, got blocks_per_stage={tuple(blocks)} "
            f"for widths={tuple(widths)}."
        )
    if min(blocks) < 1 or min(widths) < 1:
        raise ModelError(
            f"Every stage needs >= 1 block and a positive width, got blocks_per_stage="
            f"{tuple(blocks)} for widths={tuple(widths)}."
        )
    if max(blocks) > MAX_BLOCKS or max(widths) > MAX_WIDTH:
        raise ModelError(
            f"At most {MAX_BLOCKS} blocks per stage and {MAX_WIDTH} channels, got "
            f"blocks_per_stage={tuple(blocks)} for widths={tuple(widths)}."
        )
    return blocks


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or 1x1 conv-BN shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet for small images: stem, stages of BasicBlocks (stride 2 between), pool, linear."""

    def __init__(
        self,
        blocks_per_stage: int | Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        blocks_per_stage = stage_blocks(blocks_per_stage, widths)
        stem_width = widths[0] if stem_width is None else check_width("stem_width", stem_width)
        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        channels = stem_width
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels, width, stride)]
            stage += [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            channels = width
        self.num_stages = len(widths)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _blocks_from_depth(depth: int, num_stages: int) -> list[int]:
    """Blocks per stage for a depth of ``2 * num_stages * n + 2`` (6n+2 for three stages)."""
    per_n = 2 * num_stages
    if depth < per_n + 2 or (depth - 2) % per_n:
        raise ModelError(
            f"depth={depth} does not fit {num_stages} stages: use {per_n}n+2 "
            f"(e.g. {per_n + 2}, {2 * per_n + 2}, {3 * per_n + 2})."
        )
    return [(depth - 2) // per_n] * num_stages


@register_model("cifar_resnet")
def cifar_resnet(
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    depth: int | None = None,
    widths: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int | Sequence[int] | None = None,
    stem_width: int | None = None,
) -> CifarResNet:
    """CIFAR ResNet sized by ``depth`` (default 20) or by ``blocks_per_stage``, not both.

    ``widths`` has one entry per stage (3 or 4 stages); ``stem_width`` defaults to ``widths[0]``.
    """
    reject_pretrained("cifar_resnet", pretrained)
    if len(widths) not in (3, 4):
        raise ModelError(f"widths must have 3 or 4 entries (one per stage), got {tuple(widths)}.")
    if depth is not None and blocks_per_stage is not None:
        raise ModelError("Pass either depth or blocks_per_stage, not both.")
    if blocks_per_stage is None:
        blocks_per_stage = _blocks_from_depth(20 if depth is None else depth, len(widths))
    return CifarResNet(blocks_per_stage, widths, num_classes, in_channels, stem_width)


def _register_preset(name: str, doc: str, **arch: Any) -> None:
    def factory(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> CifarResNet:
        reject_pretrained(name, pretrained)
        return cifar_resnet(num_classes, in_channels, **arch)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    register_model(name)(factory)


# Stem widths 32 (x4) and 16 follow RepDistiller/mdistiller, whose CIFAR-100 tables users compare.
_register_preset(
    "resnet8x4",
    "ResNet-8x4 (RepDistiller): 1 block/stage, widths 64-256, stem 32.",
    depth=8,
    widths=(64, 128, 256),
    stem_width=32,
)
_register_preset(
    "resnet32x4",
    "ResNet-32x4 (RepDistiller): 5 blocks/stage, widths 64-256, stem 32.",
    depth=32,
    widths=(64, 128, 256),
    stem_width=32,
)
_register_preset(
    "cifar_resnet20",
    "ResNet-20 (He et al., 1x1-conv shortcuts): widths 16-64.",
    depth=20,
    widths=(16, 32, 64),
)
_register_preset(
    "cifar_resnet56",
    "ResNet-56 (He et al., 1x1-conv shortcuts): widths 16-64.",
    depth=56,
    widths=(16, 32, 64),
)
_register_preset(
    "cifar_resnet18",
    "ResNet-18 for CIFAR: blocks [2, 2, 2, 2], widths 64-512, 3x3 stem.",
    blocks_per_stage=(2, 2, 2, 2),
    widths=(64, 128, 256, 512),
)
