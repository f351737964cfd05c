"""The labels and class names of any dataset, found without reading its images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def _unwrapped(dataset: Any, attribute: str) -> tuple[Any, np.ndarray | None]:
    """The dataset under ``Subset``-like wrappers (with ``dataset`` and ``indices``) that has
    ``attribute`` or wraps nothing, and the indices of the wrapper's items in it (None: the
    dataset itself)."""
    indices: np.ndarray | None = None
    while getattr(dataset, attribute, None) is None and hasattr(dataset, "indices") \
            and hasattr(dataset, "dataset"):
        own = np.asarray(dataset.indices, dtype=np.int64)
        indices = own if indices is None else own[indices]
        dataset = dataset.dataset
    return dataset, indices


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The int64 label of every item: ``targets`` when present (also under ``Subset``-like
    wrappers; a ``TensorDataset``'s integer second tensor), else read item by item."""
    inner, indices = _unwrapped(dataset, "targets")
    targets = getattr(inner, "targets", None)
    tensors = getattr(inner, "tensors", None)
    if targets is None and isinstance(tensors, tuple) and len(tensors) >= 2 \
            and isinstance(tensors[1], torch.Tensor) and tensors[1].ndim == 1 \
            and not tensors[1].is_floating_point():
        targets = tensors[1]
    if targets is None:
        return np.array([int(dataset[i][1]) for i in range(len(dataset))],  # type: ignore[arg-type]
                        dtype=np.int64)
    labels = np.asarray(targets, dtype=np.int64)
    return labels if indices is None else labels[indices]


def dataset_classes(dataset: Dataset) -> Sequence[str] | None:
    """The class names of ``dataset`` (``classes``, also under ``Subset``-like wrappers), or
    None when it has none."""
    return getattr(_unwrapped(dataset, "classes")[0], "classes", None)
