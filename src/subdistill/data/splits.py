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
        shuffled = _shuffled_class(train_full.targets, c, seed)
        members = len(shuffled)
        n_val = _share(val_fraction, members)
        n_train = members - n_val if take_rest else _share(rho, members)
        if n_val == 0 or n_train == 0:
            empty = "validation" if n_val == 0 else "training"
            raise ConfigError(
                f"class {train_full.classes[c]!r} has {members} training images: "
                f"val_fraction={val_fraction:g} and rho={rho:g} leave it no {empty} image; "
                "use larger fractions")
        val_idx.append(shuffled[:n_val])
        train_idx.append(shuffled[n_val:n_val + n_train])
    test_idx = np.flatnonzero(np.isin(test_full.targets, subtask.classes))
    label_map = subtask.label_map
    return SubtaskSplits(
        subtask=subtask,
        train=SubtaskDataset(train_full, np.sort(np.concatenate(train_idx)), label_map),
        val=SubtaskDataset(train_full.evaluation(), np.sort(np.concatenate(val_idx)), label_map),
        test=SubtaskDataset(test_full.evaluation(), test_idx, label_map),
    )


def _shuffled_class(targets: np.ndarray, c: int, seed: int) -> np.ndarray:
    """The indices of class ``c``'s images in a seeded order of its own (seeded per
    (seed, class): one class's draw does not depend on the others)."""
    return np.random.default_rng([seed, c]).permutation(np.flatnonzero(targets == c))


def _share(fraction: float, count: int) -> int:
    """``fraction`` of ``count`` images, rounded half up."""
    return int(fraction * count + 0.5)


def holdout_split(dataset: ImageDataset, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[SubtaskDataset, SubtaskDataset]:
    """Cut one dataset into the training and test datasets that :func:`make_splits` takes:
    ``test_fraction`` of each class's images (stratified, seeded per (seed, class)) are the test
    set, the rest the training set; both keep the dataset's classes and labels."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    train_idx, test_idx = [], []
    for c in np.unique(dataset.targets).tolist():
        shuffled = _shuffled_class(dataset.targets, c, seed)
        n_test = _share(test_fraction, len(shuffled))
        if n_test == 0 or n_test == len(shuffled):
            empty = "test" if n_test == 0 else "training"
            raise ConfigError(
                f"class {dataset.classes[c]!r} has {len(shuffled)} images: "
                f"test_fraction={test_fraction:g} leaves it no {empty} image; give it more "
                "images or change test_fraction")
        test_idx.append(shuffled[:n_test])
        train_idx.append(shuffled[n_test:])
    identity = {c: c for c in range(len(dataset.classes))}
    return (SubtaskDataset(dataset, np.sort(np.concatenate(train_idx)), identity),
            SubtaskDataset(dataset.evaluation(), np.sort(np.concatenate(test_idx)), identity))


def split_dataset(dataset: ImageDataset, subtask: Subtask, rho: float = 0.8,
                  val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0,
                  test_seed: int = 0) -> SubtaskSplits:
    """The splits of a subtask of one dataset without an official test split: test =
    ``test_fraction`` of each class's images (:func:`holdout_split` with ``test_seed``, fixed by
    default so that every ``seed`` is scored on the same images), then :func:`make_splits` of
    the rest with ``rho``, ``val_fraction`` and ``seed``."""
    train_full, test_full = holdout_split(dataset, test_fraction, test_seed)
    return make_splits(train_full, test_full, subtask, rho, val_fraction, seed)


def _check_present(dataset: ImageDataset, subtask: Subtask, role: str) -> None:
    counts = np.bincount(dataset.targets, minlength=max(subtask.classes) + 1)
    missing = [f"{c} ({name!r})" for c, name in zip(subtask.classes, subtask.names)
               if counts[c] == 0]
    if missing:
        raise SubtaskError(
            f"subtask classes {', '.join(missing)} have no images in the {role} dataset; "
            "choose classes the dataset contains."
        )
