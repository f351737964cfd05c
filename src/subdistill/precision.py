"""Mixed precision and memory layout: bf16 autocast and channels_last, as training options."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 runs on native instructions on ``device``: a CUDA device that supports it,
    a CPU with AVX512-BF16 or AMX (oneDNN's own check); True where torch cannot tell."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return True if check is None else bool(check())
    return True


def warn_if_emulated(device: torch.device | str, precision: str) -> bool:
    """Log a warning when ``precision="bf16"`` would run emulated on ``device`` (on an AVX2-only
    CPU bf16 convolutions measured 8-80x slower than fp32, docs/performance.md); returns
    whether it warned."""
    if precision != "bf16" or native_bf16(device):
        return False
    log.warning("train.precision bf16: this %s has no native bf16 instructions, so autocast is "
                "emulated and far slower than fp32 here; set train.precision: fp32",
                torch.device(device).type.upper())
    return True


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``; no change for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


T = TypeVar("T", Tensor, nn.Module)


def to_layout(value: T, channels_last: bool) -> T:
    """``value`` in channels_last memory format when asked and applicable (modules and 4-D
    tensors); unchanged otherwise."""
    if not channels_last or (isinstance(value, Tensor) and value.dim() != 4):
        return value
    return value.to(memory_format=torch.channels_last)
