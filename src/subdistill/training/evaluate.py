"""Evaluation: accuracy of a classifier over a dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..distributed import all_reduce_sum, shard
from ..modes import eval_mode
from ..precision import autocast


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset | DataLoader, device: torch.device | str = "cpu",
             batch_size: int = 256, precision: str = "fp32", sharded: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (a dataset or loader of ``(x, y)``), in eval mode
    (bf16 autocast with ``precision="bf16"``).

    ``sharded``: in a process group, each process scores its share of the dataset ``data``
    and the counts are added over the group (call it on every process)."""
    if sharded and not isinstance(data, DataLoader):
        data = shard(data)
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    correct = total = 0
    with eval_mode(model):
        for x, y in loader:
            with autocast(device, precision):
                prediction = model(x.to(device)).argmax(dim=-1)
            correct += (prediction == y.to(device)).sum().item()
            total += y.numel()
    if sharded:
        counts = torch.tensor([correct, total], dtype=torch.float64, device=device)
        all_reduce_sum([counts])
        correct, total = counts.tolist()
    return correct / max(total, 1)
