"""Fashion-MNIST from its IDX files: class names, normalisation, presets and the loader."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, first_line
from .base import ArrayImageDataset, Stats
from .registry import DOWNLOAD_HINT, first_existing, register_dataset
from .subtask import class_indices, register_presets

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_MEAN: Stats = (0.2860,)
FASHION_MNIST_STD: Stats = (0.3530,)

register_presets("fashion-mnist", {
    "tops": class_indices(FASHION_MNIST_CLASSES, ("T-shirt/top", "Pullover", "Coat", "Shirt")),
    "footwear": class_indices(FASHION_MNIST_CLASSES, ("Sandal", "Sneaker", "Ankle boot")),
})

_IDX_DTYPES: dict[int, type | str] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
                                      0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path} is truncated or damaged ({err}); re-fetch it.") from None
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

        try:
            FashionMNIST(root, train=split == "train", download=True)
        except (OSError, RuntimeError) as err:  # no network, a full disk, a damaged download
            raise DataError(f"cannot download Fashion-MNIST into {root} "
                            f"({first_line(err)}).") from None

    def find(stem: str) -> Path:
        candidates = [f / f"{stem}{ext}" for f in folders for ext in (".gz", "")]
        return first_existing(candidates, f"Fashion-MNIST file {stem}",
                               f"Point data.root at the folder holding the IDX files, or "
                               f"{DOWNLOAD_HINT}.")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))[:, None]
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    return ArrayImageDataset(images.copy(), labels, FASHION_MNIST_CLASSES,
                             FASHION_MNIST_MEAN, FASHION_MNIST_STD, family="fashion-mnist")
