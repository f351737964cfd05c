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

from ..errors import ConfigError, DataError, closest
from ..registry import Registry
from .base import ImageDataset

Loader = Callable[..., ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset", DataError)
SPLITS = ("train", "test")
DOWNLOAD_HINT = ("set data.download: true (download=True in Python, --download for the demo) "
                 "to fetch it")


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
    parameters = inspect.signature(loader).parameters
    options = [n for n, p in parameters.items() if n not in ("split", "root", "download")
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(k for k in kwargs if k not in options and not takes_any)
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option {unknown[0]!r}.{closest(unknown[0], options)} "
            f"Its options: {', '.join(options) or 'none'}."
        )
    try:
        inspect.signature(loader).bind(**arguments)
    except TypeError as err:
        raise ConfigError(f"dataset {name!r}: {err}.") from None
    return loader(**arguments)


def first_existing(candidates: Sequence[Path], what: str, how: str) -> Path:
    """The first existing path of ``candidates``, else a DataError listing them."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DataError(f"{what} not found; looked for {tried}. {how}")
