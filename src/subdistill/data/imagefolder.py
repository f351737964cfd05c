"""ImageFolder directories (one subfolder of images per class), e.g. ImageNet, the ImageNet
class names and the paper's ImageNet subtask presets."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms import functional as TF

from ..errors import ConfigError, DataError, closest
from .base import ImageDataset, Stats
from .decoded import CACHE_MODES, DecodedImages, decode_images
from .registry import first_existing, register_dataset
from .subtask import register_presets

IMAGENET_MEAN: Stats = (0.485, 0.456, 0.406)
IMAGENET_STD: Stats = (0.229, 0.224, 0.225)
TRAIN_CROPS = ("none", "random-resized")

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


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in label order (from torchvision's weight metadata,
    available offline): ``imagenet_class_names()[207] == "golden retriever"``."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class FolderImageDataset(ImageDataset):
    """An ImageFolder-layout directory (one subfolder per class), decoded with PIL.

    Each image is converted to RGB, its shorter side resized to ``resize`` (default
    ``image_size * 8 / 7``: 256 for 224) and centre-cropped to ``image_size``. With
    ``train_crop="random-resized"`` an item is instead a random crop (torchvision's
    RandomResizedCrop: 8-100 % of the area, aspect ratio 3/4-4/3) of the whole image, its
    shorter side first reduced to at most ``source_size`` (default ``2 * image_size``), resized
    to ``image_size``; :meth:`evaluation` gives the centre-cropped images. ``cache``: ``none``
    (decode on every access), ``memory`` or ``disk`` (decode every image once, into memory or
    into a file under :func:`~subdistill.data.decoded.cache_dir` named by the files and the
    sizes, which later runs map instead of decoding).
    """

    def __init__(
        self,
        root: str | Path,
        resize: int | None = None,
        image_size: int = 224,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
        family: str | None = None,
        cache: str = "none",
        train_crop: str = "none",
        source_size: int | None = None,
    ) -> None:
        _check_options(image_size, resize, source_size, mean, std, cache, train_crop)
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
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.image_size = image_size
        self.resize = resize or round(image_size * 8 / 7)
        self.source_size = source_size or 2 * image_size
        self.image_shape = (3, image_size, image_size)
        self.family = family
        self.cache, self.train_crop = cache, train_crop
        stats = [(Path(p).relative_to(root), label, os.stat(p)) for p, label in samples]
        self._files = "\n".join(f"{name}:{label}:{stat.st_size}:{stat.st_mtime_ns}"
                                for name, label, stat in stats)
        self._decoded = self._decode_all()

    def _sizes(self) -> str:
        """The settings the stored (decoded) images depend on."""
        if self.train_crop == "random-resized":
            return f"source {self.source_size}"
        return f"resize {self.resize} crop {self.image_size}"

    def fingerprint(self) -> str:
        """A short hash of the files (paths, sizes, modification times), labels and
        preprocessing; the images are not read."""
        settings = f"{self.resize}:{self.image_size}:{self.mean}:{self.std}"
        if self.train_crop != "none":
            settings += f":{self.train_crop}:{self.source_size}"
        return hashlib.sha256((self._files + settings).encode()).hexdigest()[:16]

    def evaluation(self) -> FolderImageDataset:
        """The centre-cropped images (this dataset unless it draws random training crops)."""
        if self.train_crop == "none":
            return self
        if not hasattr(self, "_evaluation"):
            view = copy.copy(self)
            view.train_crop, view.classes = "none", list(self.classes)
            view._decoded = view._decode_all()
            self._evaluation = view
        return self._evaluation

    def _decode_all(self) -> DecodedImages | None:
        if self.cache == "none":
            return None
        key = hashlib.sha256(f"{self.root.resolve()}\n{self._files}\n{self._sizes()}".encode())
        return decode_images(len(self.samples), self._stored, self.cache,
                             f"imagefolder-{key.hexdigest()[:24]}")

    def _stored(self, index: int) -> np.ndarray:
        """Image ``index`` as stored before any random crop: uint8 3×H×W."""
        path = self.samples[index][0]
        try:
            with Image.open(path) as file:
                img = file.convert("RGB")
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read image {path} ({err}); replace or remove it.") from None
        if self.train_crop == "random-resized":
            if min(img.size) > self.source_size:
                img = TF.resize(img, self.source_size)
        else:
            img = TF.center_crop(TF.resize(img, self.resize), self.image_size)
        return np.asarray(img).transpose(2, 0, 1)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = (self._decoded[index] if self._decoded is not None
                 else torch.from_numpy(np.ascontiguousarray(self._stored(index))))
        if self.train_crop == "random-resized":
            top, left, height, width = RandomResizedCrop.get_params(image, [0.08, 1.0],
                                                                    [3 / 4, 4 / 3])
            image = TF.resized_crop(image, top, left, height, width,
                                    [self.image_size, self.image_size], antialias=True)
        return self._normalize(image), int(self.targets[index])


def _check_options(image_size: object, resize: object, source_size: object, mean: Sequence,
                   std: Sequence, cache: str, train_crop: str) -> None:
    """One-line ConfigErrors for imagefolder options out of range."""
    for name, value, optional in (("image_size", image_size, False), ("resize", resize, True),
                                  ("source_size", source_size, True)):
        if not (optional and value is None) and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"imagefolder option {name} must be a positive integer, got "
                              f"{value!r}.")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(isinstance(v, (int, float)) for v in values):
            raise ConfigError(f"imagefolder option {name} must be 3 numbers (R, G, B), got "
                              f"{values!r}.")
    if min(std) <= 0:
        raise ConfigError(f"imagefolder option std must be positive, got {std!r}.")
    for name, value, choices in (("cache", cache, CACHE_MODES),
                                 ("train_crop", train_crop, TRAIN_CROPS)):
        if value not in choices:
            raise ConfigError(f"imagefolder option {name}: unknown value {value!r}."
                              f"{closest(str(value), choices)} Use one of {', '.join(choices)}.")


@register_dataset("imagefolder")
def _imagefolder(split: str, root: Path, download: bool, image_size: int = 224,
                 resize: int | None = None, mean: Stats = IMAGENET_MEAN,
                 std: Stats = IMAGENET_STD, cache: str = "none", train_crop: str = "none",
                 source_size: int | None = None,
                 family: str | None = None) -> FolderImageDataset:
    """``<root>/train`` and ``<root>/val`` (or ``<root>/test``) ImageFolder directories, with the
    options of :class:`FolderImageDataset` (``train_crop`` applies to the training split only).

    1000 WordNet-id class folders (n########, ImageNet-1k) are named by
    :func:`imagenet_class_names` and get ``family`` "imagenet" unless one is given, so that the
    ImageNet presets apply.
    """
    names = ["train"] if split == "train" else ["val", "test"]
    folder = first_existing([root / n for n in names], f"image folder for split {split!r}",
                            "Arrange the images as <root>/<split>/<class>/<image>.")
    dataset = FolderImageDataset(folder, resize=resize, image_size=image_size, mean=mean, std=std,
                                 family=family, cache=cache,
                                 train_crop=train_crop if split == "train" else "none",
                                 source_size=source_size)
    if _looks_like_imagenet(dataset.classes):
        dataset.classes = imagenet_class_names()
        dataset.family = family or "imagenet"
    return dataset


def _looks_like_imagenet(classes: Sequence[str]) -> bool:
    return len(classes) == 1000 and all(
        len(c) == 9 and c[0] == "n" and c[1:].isdigit() for c in classes
    )
