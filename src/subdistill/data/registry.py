"""Datasets found by name: ``register_dataset``, ``load_dataset``, ``list_datasets``.

A loader has the signature ``fn(split, root, download, **options) -> ImageDataset``; the
built-in ones live in :mod:`.digits`, :mod:`.cifar`, :mod:`.fashion_mnist` and
:mod:`.imagefolder`, each next to its dataset's class names and subtask presets.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from ..registry import Registry
from .base import ImageDataset

Loader = Callable[..., ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset", DataError)
SPLITS = ("train", "test")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader ``fn(split, root, download, **options) -> ImageDataset`` as ``name``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


def data_root() -> Path:
    """Default data root: ``$SUBDISTILL_DATA``, else ``./data``."""
    return Path(os.environ.get("SUBDISTILL_DATA", "data")).expanduser()


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
    **kwargs: object,
) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` of dataset ``name`` from ``root``.

    ``root`` defaults to :func:`data_root`. Only torchvision-backed datasets download, and only
    when ``download=True``. Extra keyword arguments are options of the dataset's loader.
    """
    loader = DATASETS.get(name)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
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


def first_existing(candidates: Sequence[Path], what: str, how: str) -> Path:
    """The first existing path of ``candidates``, else a DataError listing them."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DataError(f"{what} not found; looked for {tried}. {how}")
