"""Image classification datasets returning normalised float images, and a registry of loaders.

Every dataset yields ``(image, label)`` with ``image`` a float32 C×H×W tensor normalised with the
dataset's ``mean``/``std`` and ``label`` an int in the dataset's own label space. No dataset
augments: augmentation is applied batch-wise by the trainer (see :mod:`subdistill.data.augment`).
"""

from __future__ import annotations

import gzip
import inspect
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import functional as TF

from ..errors import ConfigError, DataError, SubtaskError, closest
from ..subtask import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    DIGITS_CLASSES,
    FASHION_MNIST_CLASSES,
)

Stats = tuple[float, ...]

CIFAR10_MEAN: Stats = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Stats = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: Stats = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Stats = (0.2673, 0.2564, 0.2762)
FASHION_MNIST_MEAN: Stats = (0.2860,)
FASHION_MNIST_STD: Stats = (0.3530,)
# Computed once over the pixels of the digits train split (values scaled to 0..1) and
# hard-coded here.
DIGITS_MEAN: Stats = (0.3054,)
DIGITS_STD: Stats = (0.3760,)
IMAGENET_MEAN: Stats = (0.485, 0.456, 0.406)
IMAGENET_STD: Stats = (0.229, 0.224, 0.225)

SPLITS = ("train", "test")


def data_root() -> Path:
    """Default data root: ``$SUBDISTILL_DATA``, else ``./data``."""
    return Path(os.environ.get("SUBDISTILL_DATA", "data")).expanduser()


def cache_dir() -> Path:
    """Cache directory for decoded datasets: ``$SUBDISTILL_CACHE``, else ``~/.cache/subdistill``."""
    return Path(os.environ.get("SUBDISTILL_CACHE", "~/.cache/subdistill")).expanduser()


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

    def _normalize(self, image: Tensor) -> Tensor:
        """uint8 C×H×W -> float32 normalised with this dataset's mean/std."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (image.float() / 255.0 - mean) / std


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
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(
                f"images must be a uint8 (N, C, H, W) array, got {images.dtype} of shape "
                f"{tuple(images.shape)}."
            )
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
        self.image_shape = tuple(images.shape[1:])
        self.family = family

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._normalize(self.images[index]), int(self.targets[index])


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

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = TF.center_crop(TF.resize(img.convert("RGB"), self.resize), self.image_size)
        return self._normalize(TF.pil_to_tensor(img)), label


class SubtaskDataset(ImageDataset):
    """A view of ``base`` restricted to ``indices``, with labels remapped by ``label_map``.

    ``classes`` are the subtask's class names in new-label order. ``family`` is None, since the
    view's labels are no longer those of the base dataset's family.
    """

    def __init__(self, base: ImageDataset, indices: Sequence[int] | np.ndarray,
                 label_map: Mapping[int, int]) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
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
        self.family = None

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, _ = self.base[int(self.indices[index])]
        return image, int(self.targets[index])


# --- registry -------------------------------------------------------------------------------

Loader = Callable[..., ImageDataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader ``fn(split, root, download, **options) -> ImageDataset`` as ``name``."""

    def decorate(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return decorate


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return sorted(DATASETS)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
    **kwargs,
) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` of dataset ``name`` from ``root``.

    ``root`` defaults to :func:`data_root`. Only torchvision-backed datasets download, and only
    when ``download=True``. Extra keyword arguments are options of the dataset's loader.
    """
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}.{closest(name, DATASETS)} "
            f"Available: {', '.join(list_datasets())}."
        )
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    loader = DATASETS[name]
    arguments = dict(split=split, root=Path(root).expanduser() if root else data_root(),
                     download=download, **kwargs)
    try:
        inspect.signature(loader).bind(**arguments)
    except TypeError:
        options = [p for p in inspect.signature(loader).parameters
                   if p not in ("split", "root", "download")]
        raise ConfigError(
            f"dataset {name!r} does not take options {sorted(kwargs)}; "
            f"its options are: {', '.join(options) or 'none'}."
        ) from None
    return loader(**arguments)


def _first_existing(candidates: Sequence[Path], what: str, how: str) -> Path:
    """The first existing path of ``candidates``, else a DataError listing them."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DataError(f"{what} not found; looked for {tried}. {how}")


# --- scikit-learn digits ----------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


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


# --- CIFAR-10 as JPEG zips -------------------------------------------------------------------

@register_dataset("cifar10-jpeg")
def _cifar10_jpeg(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """CIFAR-10 from ``<root>/cifar10-jpeg/{train,test}.zip`` (or ``<root>/{split}.zip``), with
    the layout ``<split>/<class>/<NNNN>.jpg``. Decoded images are cached in :func:`cache_dir`."""
    path = _first_existing(
        [root / "cifar10-jpeg" / f"{split}.zip", root / f"{split}.zip"],
        f"CIFAR-10 JPEG {split} zip",
        "Point root at the folder holding cifar10-jpeg/, or use dataset 'cifar10' with "
        "download=True to fetch CIFAR-10 through torchvision.",
    )
    with zipfile.ZipFile(path) as archive:
        members = _cifar10_members(archive, path)
        labels = np.array([label for label, _ in members], dtype=np.int64)
        stat = path.stat()
        cache = cache_dir() / "cifar10-jpeg" / f"{split}-{stat.st_size}-{stat.st_mtime_ns}.npy"
        images = _load_cache(cache, len(labels))
        if images is None:
            images = _decode(archive, [name for _, name in members], path)
            _save_cache(cache, images)
    return ArrayImageDataset(images, labels, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD,
                             family="cifar10")


def _cifar10_members(archive: zipfile.ZipFile, path: Path) -> list[tuple[int, str]]:
    """(label, member name) of every image, by class in CIFAR-10 order, then by name."""
    members = []
    for name in archive.namelist():
        if name.endswith("/"):
            continue
        parts = name.split("/")
        if len(parts) < 2 or parts[-2] not in CIFAR10_CLASSES:
            raise DataError(
                f"{path} has member {name!r} outside the layout <split>/<class>/<file>.jpg "
                f"with a CIFAR-10 class; is it a CIFAR-10 JPEG zip?"
            )
        members.append((CIFAR10_CLASSES.index(parts[-2]), name))
    if not members:
        raise DataError(f"{path} contains no images.")
    return sorted(members)


def _decode(archive: zipfile.ZipFile, names: Sequence[str], path: Path) -> np.ndarray:
    """Decode the named RGB images into one uint8 (N, 3, H, W) array."""
    first = _read_rgb(archive, names[0])
    images = np.empty((len(names), *first.shape), dtype=np.uint8)
    for i, name in enumerate(names):
        image = first if i == 0 else _read_rgb(archive, name)
        if image.shape != first.shape:
            raise DataError(f"{path}: {name} is {image.shape[:2]}, not {first.shape[:2]} pixels.")
        images[i] = image
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _read_rgb(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with Image.open(io.BytesIO(archive.read(name))) as img:
        return np.asarray(img.convert("RGB"))


def _load_cache(path: Path, count: int) -> np.ndarray | None:
    """The cached array at ``path`` if it exists, is readable and holds ``count`` images."""
    try:
        images = np.load(path)
    except (OSError, ValueError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != count:
        return None
    return images


def _save_cache(path: Path, images: np.ndarray) -> None:
    """Write ``images`` to ``path`` atomically; warn (and go on) when that is impossible."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, images)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"cannot cache decoded images in {path.parent} ({err}); set "
                      "SUBDISTILL_CACHE to a writable folder to avoid decoding again.",
                      stacklevel=3)


# --- Fashion-MNIST from the IDX files ---------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file; re-fetch it.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path} holds {len(data)} bytes instead of {expected}; re-fetch it.")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


@register_dataset("fashion-mnist")
def _fashion_mnist(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """Fashion-MNIST from its four IDX files in ``<root>/fashion-mnist/``,
    ``<root>/FashionMNIST/raw/`` (torchvision's layout; fetched there when ``download=True``)
    or ``<root>`` itself."""
    folders = [root / "fashion-mnist", root / "FashionMNIST" / "raw", root]
    prefix = "train" if split == "train" else "t10k"
    if download and not any((f / f"{prefix}-labels-idx1-ubyte.gz").exists() for f in folders):
        from torchvision.datasets import FashionMNIST

        FashionMNIST(root, train=split == "train", download=True)

    def find(stem: str) -> Path:
        candidates = [f / f"{stem}{ext}" for f in folders for ext in (".gz", "")]
        return _first_existing(candidates, f"Fashion-MNIST file {stem}",
                               "Pass the folder holding the IDX files as root, "
                               "or download=True to fetch them through torchvision.")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))[:, None]
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    return ArrayImageDataset(images.copy(), labels, FASHION_MNIST_CLASSES,
                             FASHION_MNIST_MEAN, FASHION_MNIST_STD, family="fashion-mnist")


# --- torchvision CIFAR ------------------------------------------------------------------------

def _torchvision_cifar(dataset_class: type, split: str, root: Path, download: bool,
                       classes: Sequence[str], mean: Stats, std: Stats,
                       family: str) -> ArrayImageDataset:
    try:
        dataset = dataset_class(root, train=split == "train", download=download)
    except RuntimeError as err:
        raise DataError(
            f"{dataset_class.__name__} not found under {root} ({err}); pass the folder holding "
            f"{dataset_class.base_folder}/ as root, or download=True to fetch it."
        ) from err
    images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))
    return ArrayImageDataset(images, dataset.targets, classes, mean, std, family=family)


@register_dataset("cifar10")
def _cifar10(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """torchvision's CIFAR-10 (``<root>/cifar-10-batches-py``)."""
    from torchvision.datasets import CIFAR10

    return _torchvision_cifar(CIFAR10, split, root, download, CIFAR10_CLASSES,
                              CIFAR10_MEAN, CIFAR10_STD, "cifar10")


@register_dataset("cifar100")
def _cifar100(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """torchvision's CIFAR-100 with fine labels (``<root>/cifar-100-python``)."""
    from torchvision.datasets import CIFAR100

    return _torchvision_cifar(CIFAR100, split, root, download, CIFAR100_CLASSES,
                              CIFAR100_MEAN, CIFAR100_STD, "cifar100")


# --- ImageFolder directories ------------------------------------------------------------------

@register_dataset("imagefolder")
def _imagefolder(split: str, root: Path, download: bool, resize: int = 256,
                 image_size: int = 224, family: str | None = None) -> FolderImageDataset:
    """``<root>/train`` and ``<root>/val`` (or ``<root>/test``) ImageFolder directories.

    ``family`` defaults to "imagenet" when there are 1000 WordNet-id class folders (n########),
    so that the ImageNet presets apply; otherwise to None.
    """
    names = ["train"] if split == "train" else ["val", "test"]
    folder = _first_existing([root / n for n in names], f"image folder for split {split!r}",
                             "Arrange the images as <root>/<split>/<class>/<image>.")
    dataset = FolderImageDataset(folder, resize=resize, image_size=image_size, family=family)
    if family is None and _looks_like_imagenet(dataset.classes):
        dataset.family = "imagenet"
    return dataset


def _looks_like_imagenet(classes: Sequence[str]) -> bool:
    return len(classes) == 1000 and all(
        len(c) == 9 and c[0] == "n" and c[1:].isdigit() for c in classes
    )
