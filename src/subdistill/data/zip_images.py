"""Decoding the images of a zip archive into one uint8 array, cached on disk."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .decoded import cache_dir


def cached_images(archive: zipfile.ZipFile, path: Path, names: Sequence[str],
                  key: str) -> np.ndarray:
    """The named RGB images of ``archive`` (the zip at ``path``) as one uint8 (N, 3, H, W)
    array, read from :func:`cache_dir` under ``key`` when the zip is unchanged (same size and
    modification time), decoded and cached otherwise."""
    stat = path.stat()
    cache = cache_dir() / f"{key}-{stat.st_size}-{stat.st_mtime_ns}.npy"
    images = _load_cache(cache, len(names))
    if images is None:
        images = _decode(archive, names, path)
        _save_cache(cache, images)
    return images


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
    """Member ``name`` decoded as an RGB (H, W, 3) array; a DataError naming it when the zip
    entry or the image in it is damaged."""
    try:
        with Image.open(io.BytesIO(archive.read(name))) as img:
            return np.asarray(img.convert("RGB"))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise DataError(f"{archive.filename}: member {name} is damaged ({err}); re-fetch the "
                        "zip.") from None


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
