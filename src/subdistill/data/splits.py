"""Train/validation/test splits of a subtask, following the paper's protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError, SubtaskError
from .base import ImageDataset, SubtaskDataset
from .subtask import Subtask


@dataclass(frozen=True)
class SubtaskSplits:
    """The subtask and its training, validation and test views (labels remapped)."""

    subtask: Subtask
    train: SubtaskDataset
    val: SubtaskDataset
    test: SubtaskDataset


def make_splits(
    train_full: ImageDataset,
    test_full: ImageDataset,
    subtask: Subtask,
    rho: float = 0.8,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> SubtaskSplits:
    """Split a subtask's data: validation = ``val_fraction`` of its official training images,
    training = a fraction ``rho`` of them drawn from the rest, test = its official test images.

    Both draws are stratified per class and seeded per (seed, class), so a class's split does not
    depend on the other classes, validation does not depend on ``rho``, and the training set of
    a smaller ``rho`` is a subset of that of a larger one. ``rho + val_fraction`` must be <= 1
    (when it is 1, training takes all the remaining images).
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    if not 0 < rho <= 1 - val_fraction + 1e-9:
        raise ConfigError(
            f"rho must be in (0, 1 - val_fraction] = (0, {1 - val_fraction:g}], got {rho}; "
            "training and validation images are drawn disjointly from the training split."
        )
    if list(train_full.classes) != list(test_full.classes):
        raise DataError("the training and test datasets have different classes; "
                        "load both splits of the same dataset.")
    _check_present(train_full, subtask, "training")
    _check_present(test_full, subtask, "test")
    take_rest = rho >= 1 - val_fraction - 1e-9
    train_idx, val_idx = [], []
    for c in subtask.classes:
        members = np.flatnonzero(train_full.targets == c)
        shuffled = np.random.default_rng([seed, c]).permutation(members)
        n_val = int(val_fraction * len(members) + 0.5)
        n_train = len(members) - n_val if take_rest else int(rho * len(members) + 0.5)
        if n_val == 0 or n_train == 0:
            empty = "validation" if n_val == 0 else "training"
            raise ConfigError(
                f"class {train_full.classes[c]!r} has {len(members)} training images: "
                f"val_fraction={val_fraction:g} and rho={rho:g} leave it no {empty} image; "
                "use larger fractions")
        val_idx.append(shuffled[:n_val])
        train_idx.append(shuffled[n_val:n_val + n_train])
    test_idx = np.flatnonzero(np.isin(test_full.targets, subtask.classes))
    label_map = subtask.label_map
    return SubtaskSplits(
        subtask=subtask,
        train=SubtaskDataset(train_full, np.sort(np.concatenate(train_idx)), label_map),
        val=SubtaskDataset(train_full, np.sort(np.concatenate(val_idx)), label_map),
        test=SubtaskDataset(test_full, test_idx, label_map),
    )


def _check_present(dataset: ImageDataset, subtask: Subtask, role: str) -> None:
    counts = np.bincount(dataset.targets, minlength=max(subtask.classes) + 1)
    missing = [f"{c} ({name!r})" for c, name in zip(subtask.classes, subtask.names)
               if counts[c] == 0]
    if missing:
        raise SubtaskError(
            f"subtask classes {', '.join(missing)} have no images in the {role} dataset; "
            "choose classes the dataset contains."
        )
