"""Mixed precision and memory layout: bf16 autocast and channels_last, as training options."""

from __future__ import annotations

import logging
import os
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


AVX2_HAZARD_CHANNELS = 8
"""oneDNN's AVX2 weight gradient of a strided 1×1 convolution in channels_last corrupts the heap
below this many input channels (measured: torch 2.14.1, 1 thread; docs/performance.md)."""


def onednn_avx2() -> bool:
    """Whether oneDNN runs its AVX2 kernels on this CPU: no AVX-512 (ATen's capability), or
    ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` capping it at an AVX2 level."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if cap:
        return cap.upper().startswith("AVX2")
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def channels_last_hazards(model: nn.Module) -> list[str]:
    """Paths of the convolutions of ``model`` whose channels_last weight gradient oneDNN's AVX2
    kernels get wrong: 1×1, strided, fewer than :data:`AVX2_HAZARD_CHANNELS` input channels."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
            and m.in_channels < AVX2_HAZARD_CHANNELS]


def usable_channels_last(student: nn.Module, device: torch.device | str,
                         channels_last: bool) -> bool:
    """``channels_last``, unless training ``student`` in it on this CPU would hit the oneDNN
    AVX2 defect of :func:`channels_last_hazards`: then a warning, and False (NCHW)."""
    if not channels_last or torch.device(device).type != "cpu" or not onednn_avx2():
        return channels_last
    hazards = channels_last_hazards(student)
    if not hazards:
        return True
    log.warning("train.channels_last: oneDNN's AVX2 kernels on this CPU corrupt memory in the "
                "weight gradient of %s (1x1, strided, < %d input channels) in channels_last; "
                "training in NCHW", hazards[0], AVX2_HAZARD_CHANNELS)
    return False


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``; no change for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


T = TypeVar("T", Tensor, nn.Module)


def to_layout(value: T, channels_last: bool) -> T:
    """``value`` in channels_last memory format when asked and applicable (modules and 4-D
    tensors); otherwise modules and other tensors unchanged, and 4-D tensors with NCHW strides
    (a one-channel batch can be both contiguous and channels_last: convolutions then run, and
    propagate, channels_last)."""
    if isinstance(value, Tensor) and value.dim() != 4:
        return value
    if channels_last:
        return value.to(memory_format=torch.channels_last)
    if isinstance(value, Tensor) and value.stride() != _nchw_strides(value.shape):
        return value.clone(memory_format=torch.contiguous_format)
    return value


def _nchw_strides(shape: torch.Size) -> tuple[int, ...]:
    b, c, h, w = shape
    return (c * h * w, h * w, w, 1)
