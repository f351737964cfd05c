"""scikit-learn's bundled 8×8 handwritten digits: the offline default dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ArrayImageDataset, Stats
from .registry import register_dataset
from .subtask import register_presets

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
# Computed once over the pixels of the digits train split (values scaled to 0..1) and
# hard-coded here.
DIGITS_MEAN: Stats = (0.3054,)
DIGITS_STD: Stats = (0.3760,)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

register_presets("digits", {"confusable": (3, 5, 8, 9), "low": (0, 1, 2, 3, 4)})


@register_dataset("digits")
def _digits(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """scikit-learn's bundled 8×8 digits (1797 images). It has no official split: a fixed
    stratified split (20% test, seed 0) serves as one. ``root`` is not used."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    train, test = train_test_split(
        np.arange(len(images)), test_size=DIGITS_TEST_FRACTION,
        stratify=digits.target, random_state=DIGITS_SPLIT_SEED,
    )
    keep = np.sort(train if split == "train" else test)
    return ArrayImageDataset(images[keep], digits.target[keep], DIGITS_CLASSES,
                             DIGITS_MEAN, DIGITS_STD, family="digits")
