"""Evaluation: the confusion matrix and accuracy of a classifier over a dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..distributed import all_reduce_sum, shard
from ..modes import eval_mode
from ..precision import autocast


@torch.no_grad()
def confusion_matrix(model: nn.Module, data: Dataset | DataLoader, device: torch.device | str = "cpu",
                     batch_size: int = 256, precision: str = "fp32",
                     sharded: bool = False) -> torch.Tensor:
    """Counts of (true class, predicted class) of ``model`` on ``data`` (a dataset or loader of
    ``(x, y)``): a (K, K) int64 matrix, K the model's output width, rows the true classes. In
    eval mode (bf16 autocast with ``precision="bf16"``).

    ``sharded``: in a process group, each process scores its share of the dataset ``data``
    and the counts are added over the group (call it on every process)."""
    whole = data
    if sharded and not isinstance(data, DataLoader):
        data = shard(data)
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    counts: torch.Tensor | None = None
    with eval_mode(model):
        for x, y in loader:
            with autocast(device, precision):
                logits = model(x.to(device))
            k = logits.shape[-1]
            pairs = y.to(device).long() * k + logits.argmax(dim=-1)
            batch = torch.bincount(pairs, minlength=k * k).reshape(k, k)
            counts = batch if counts is None else counts + batch
    if counts is None:  # no image here: the class count from one image of the whole set
        first = next(iter(DataLoader(whole, batch_size=1))) if len(whole) else None  # type: ignore[arg-type]
        with eval_mode(model), autocast(device, precision):
            k = 0 if first is None else model(first[0].to(device)).shape[-1]
        counts = torch.zeros(k, k, dtype=torch.long, device=device)
    if sharded:
        all_reduce_sum([counts])
    return counts.cpu()


def accuracy(model: nn.Module, data: Dataset | DataLoader, device: torch.device | str = "cpu",
             batch_size: int = 256, precision: str = "fp32", sharded: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``data``: the share of :func:`confusion_matrix`'s
    diagonal (same arguments)."""
    return share_correct(confusion_matrix(model, data, device, batch_size, precision, sharded))


def share_correct(counts: torch.Tensor) -> float:
    """The accuracy of a confusion matrix: its diagonal's share of the images."""
    return float(counts.trace()) / max(int(counts.sum()), 1)


def per_class_accuracy(counts: torch.Tensor) -> list[float | None]:
    """Recall of each true class of a confusion matrix (None for a class with no image)."""
    totals = counts.sum(dim=1)
    return [None if int(n) == 0 else float(counts[i, i]) / int(n) for i, n in enumerate(totals)]
