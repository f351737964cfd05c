"""ImageFolder directories (one subfolder of images per class), e.g. ImageNet, and the
paper's ImageNet subtask presets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import functional as TF

from ..errors import DataError
from .base import ImageDataset, Stats
from .registry import first_existing, register_dataset
from .subtask import register_presets

IMAGENET_MEAN: Stats = (0.485, 0.456, 0.406)
IMAGENET_STD: Stats = (0.229, 0.224, 0.225)

# The paper's 8 ImageNet groups of 5 sibling classes.
register_presets("imagenet", {
    "wading-bird": (129, 130, 134, 135, 138),
    "retriever": (205, 206, 207, 208, 209),
    "working-dog": (242, 243, 246, 247, 248),
    "domestic-cat": (281, 282, 283, 284, 285),
    "bag": (414, 636, 728, 748, 797),
    "bottle": (440, 720, 737, 898, 907),
    "box": (478, 492, 519, 637, 709),
    "truck": (555, 569, 717, 864, 867),
})


class FolderImageDataset(ImageDataset):
    """An ImageFolder-layout directory (one subfolder per class), decoded lazily with PIL.

    Each image is converted to RGB, its shorter side resized to ``resize`` and centre-cropped to
    ``image_size``.
    """

    def __init__(
        self,
        root: str | Path,
        resize: int = 256,
        image_size: int = 224,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
        family: str | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"image folder {root} does not exist; expected one subfolder of images per class."
            )
        try:
            classes, class_to_idx = find_classes(root)
            samples = make_dataset(root, class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as err:
            raise DataError(f"cannot read image folder {root}: {err}") from err
        self.root = root
        self.samples = samples
        self.targets = np.array([label for _, label in samples], dtype=np.int64)
        self.classes = classes
        self.mean, self.std = tuple(mean), tuple(std)
        self.resize, self.image_size = resize, image_size
        self.image_shape = (3, image_size, image_size)
        self.family = family

    def fingerprint(self) -> str:
        """A short hash of the files (paths, sizes, modification times), labels and
        preprocessing; the images are not read."""
        files = "\n".join(f"{Path(p).relative_to(self.root)}:{label}:{os.stat(p).st_size}:"
                          f"{os.stat(p).st_mtime_ns}" for p, label in self.samples)
        settings = f"{self.resize}:{self.image_size}:{self.mean}:{self.std}"
        return hashlib.sha256((files + settings).encode()).hexdigest()[:16]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = TF.center_crop(TF.resize(img.convert("RGB"), self.resize), self.image_size)
        return self._normalize(TF.pil_to_tensor(img)), label


@register_dataset("imagefolder")
def _imagefolder(split: str, root: Path, download: bool, resize: int = 256,
                 image_size: int = 224, family: str | None = None) -> FolderImageDataset:
    """``<root>/train`` and ``<root>/val`` (or ``<root>/test``) ImageFolder directories.

    ``family`` defaults to "imagenet" when there are 1000 WordNet-id class folders (n########),
    so that the ImageNet presets apply; otherwise to None.
    """
    names = ["train"] if split == "train" else ["val", "test"]
    folder = first_existing([root / n for n in names], f"image folder for split {split!r}",
                             "Arrange the images as <root>/<split>/<class>/<image>.")
    dataset = FolderImageDataset(folder, resize=resize, image_size=image_size, family=family)
    if family is None and _looks_like_imagenet(dataset.classes):
        dataset.family = "imagenet"
    return dataset


def _looks_like_imagenet(classes: Sequence[str]) -> bool:
    return len(classes) == 1000 and all(
        len(c) == 9 and c[0] == "n" and c[1:].isdigit() for c in classes
    )
