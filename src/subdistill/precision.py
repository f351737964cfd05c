"""Mixed precision and memory layout: bf16 autocast and channels_last, as training options."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch
from torch import Tensor, nn


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
