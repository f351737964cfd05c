"""The dataset classes: normalised float images with int labels, and views of a subtask.

Every dataset yields ``(image, label)`` with ``image`` a float32 C×H×W tensor normalised with the
dataset's ``mean``/``std`` and ``label`` an int in the dataset's own label space. No dataset
augments: augmentation is applied batch-wise by the trainer (see :mod:`subdistill.data.augment`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, SubtaskError
from ..fingerprint import tensors_fingerprint

Stats = tuple[float, ...]


class ImageDataset(Dataset):
    """Base of all datasets: normalised float32 C×H×W images with int labels.

    Attributes: ``classes`` (class names, indexed by label), ``targets`` (int64 labels of all
    items), ``mean``/``std`` (per-channel normalisation), ``image_shape`` (C, H, W) and
    ``family`` (the preset family for :meth:`Subtask.resolve`, or None).
    """

    classes: list[str]
    targets: np.ndarray
    mean: Stats
    std: Stats
    image_shape: tuple[int, int, int]
    family: str | None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short hash of the images and labels (by default of every item)."""
        return tensors_fingerprint(self[i] for i in range(len(self)))

    def evaluation(self) -> ImageDataset:
        """The same images without random per-item transforms, for validation and test (the
        dataset itself unless its items are random, e.g. training crops)."""
        return self

    def _normalize(self, image: Tensor) -> Tensor:
        """uint8 (0..255) or float (0..1) C×H×W -> float32 normalised with this dataset's
        mean/std."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        scale = 255.0 if image.dtype == torch.uint8 else 1.0
        return (image.float() / scale - mean) / std

class ArrayImageDataset(ImageDataset):
    """All images held in memory as one uint8 (N, C, H, W) tensor, normalised on access."""

    def __init__(
        self,
        images: Tensor | np.ndarray,
        targets: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        mean: Stats,
        std: Stats,
        family: str | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        self._check_images(images)
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) != len(images):
            raise DataError(f"{len(images)} images but {len(targets)} labels; give one each.")
        if not len(mean) == len(std) == images.shape[1]:
            raise DataError(
                f"mean/std have {len(mean)}/{len(std)} entries for {images.shape[1]} channels."
            )
        self.images = images
        self.targets = targets
        self.classes = list(classes)
        self.mean, self.std = tuple(mean), tuple(std)
        channels, height, width = images.shape[1:]
        self.image_shape = (channels, height, width)
        self.family = family

    @staticmethod
    def _check_images(images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(
                f"images must be a uint8 (N, C, H, W) array, got {images.dtype} of shape "
                f"{tuple(images.shape)}."
            )

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._normalize(self.images[index]), int(self.targets[index])

    def fingerprint(self) -> str:
        """A short hash of the images, labels and normalisation (computed once)."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = tensors_fingerprint(
                [self.images, torch.from_numpy(self.targets),
                 torch.tensor([*self.mean, *self.std], dtype=torch.float64)])
        return self._fingerprint

class SubtaskDataset(ImageDataset):
    """A view of ``base`` restricted to ``indices``, with labels remapped by ``label_map``.

    ``classes`` are the subtask's class names in new-label order. ``family`` is the base
    dataset's when the labels are unchanged (a map of every class to itself), else None. A view
    of a view is a view of the underlying dataset (one level deep).
    """

    base: ImageDataset
    indices: np.ndarray
    label_map: dict[int, int]

    def __init__(self, base: ImageDataset, indices: Sequence[int] | np.ndarray,
                 label_map: Mapping[int, int]) -> None:
        selected = np.asarray(indices, dtype=np.int64)
        if isinstance(base, SubtaskDataset):
            selected = base.indices[selected]
            label_map = {c: label_map[mid] for c, mid in base.label_map.items() if mid in label_map}
            base = base.base
        self.base = base
        self.indices = selected
        self.label_map = dict(label_map)
        original = base.targets[self.indices]
        foreign = sorted(set(original.tolist()) - set(self.label_map))
        if foreign:
            raise SubtaskError(
                f"the selected items include classes {foreign} outside the subtask "
                f"{sorted(self.label_map)}; select only items of the subtask's classes."
            )
        self.targets = np.array([self.label_map[t] for t in original.tolist()], dtype=np.int64)
        by_label = sorted(self.label_map, key=self.label_map.__getitem__)
        self.classes = [base.classes[c] for c in by_label]
        self.mean, self.std = base.mean, base.std
        self.image_shape = base.image_shape
        unchanged = self.label_map == {c: c for c in range(len(base.classes))}
        self.family = getattr(base, "family", None) if unchanged else None

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, _ = self.base[int(self.indices[index])]
        return image, int(self.targets[index])

    def evaluation(self) -> SubtaskDataset:
        """The same view of the base dataset's :meth:`~ImageDataset.evaluation` images."""
        base = self.base.evaluation()
        return self if base is self.base else SubtaskDataset(base, self.indices, self.label_map)

    def fingerprint(self) -> str:
        """A short hash of the base dataset's fingerprint, the selected items and labels."""
        return tensors_fingerprint([torch.tensor(list(self.base.fingerprint().encode())),
                                    torch.from_numpy(self.indices), torch.from_numpy(self.targets)])
