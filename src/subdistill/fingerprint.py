"""Content fingerprints of models and data, to tie saved bases, caches and checkpoints to
the teacher, the student's architecture and the images they were made with."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def model_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of the model's parameters and buffers (names, shapes, dtypes, values),
    non-persistent buffers included (e.g. the class indices of a restricted teacher)."""
    digest = hashlib.sha256()
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def structure_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of the model's architecture: names, shapes and dtypes of its
    parameters and buffers, not their values."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    text = ";".join(f"{name}:{tuple(t.shape)}:{t.dtype}" for name, t in sorted(tensors.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_fingerprint(dataset: Dataset) -> str:
    """A short SHA-256 of a dataset's images and labels: the dataset's own ``fingerprint()``
    when it has one (every :class:`~subdistill.data.ImageDataset` does, cheaply), else a pass
    over all its items."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    with torch.random.fork_rng(devices=[]):  # a DataLoader draws a seed from the global RNG
        return tensors_fingerprint(batch for batch in DataLoader(dataset, batch_size=256))


def tensors_fingerprint(batches: Iterable) -> str:
    """A short SHA-256 of a stream of tensors or tuples of tensors (shapes, dtypes, values)."""
    digest = hashlib.sha256()
    for batch in batches:
        for t in batch if isinstance(batch, (tuple, list)) else (batch,):
            t = torch.as_tensor(t).detach().cpu().contiguous()
            digest.update(f"{tuple(t.shape)}:{t.dtype}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """A short SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
