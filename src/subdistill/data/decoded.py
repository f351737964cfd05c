"""Images decoded once into one flat uint8 buffer: in memory, or in a file under
:func:`cache_dir` that later runs read as a memory map."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ..atomic import atomic_path, remove_stale_temporaries

CACHE_MODES = ("none", "memory", "disk")


def cache_dir() -> Path:
    """Cache directory for decoded datasets: ``$SUBDISTILL_CACHE``, else ``~/.cache/subdistill``."""
    return Path(os.environ.get("SUBDISTILL_CACHE", "~/.cache/subdistill")).expanduser()


class DecodedImages:
    """uint8 C×H×W images of any sizes stored back to back in one flat array (``shapes``:
    one (C, H, W) row per image)."""

    def __init__(self, flat: np.ndarray, shapes: np.ndarray) -> None:
        self.flat, self.shapes = flat, shapes
        self.offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))])

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> Tensor:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(np.array(self.flat[start:stop]).reshape(self.shapes[index]))


def decode_images(count: int, decode: Callable[[int], np.ndarray], mode: str,
                  key: str) -> DecodedImages:
    """Images ``decode(0)``, ..., ``decode(count - 1)`` (uint8 C×H×W arrays), decoded once:
    into memory (``mode`` ``memory``), or into ``cache_dir()/decoded/KEY.*`` (``disk``), read
    from there while a file of that ``key`` exists (the key must name everything the images
    depend on). A cache folder that cannot be written warns and keeps the images in memory."""
    if mode == "disk":
        data = cache_dir() / "decoded" / f"{key}.bin"
        cached = _load(data, count)
        if cached is not None:
            return cached
        try:
            return _save(data, count, decode)
        except OSError as err:
            warnings.warn(f"cannot cache decoded images in {data.parent} ({err}); set "
                          "SUBDISTILL_CACHE to a writable folder to avoid decoding again.",
                          stacklevel=2)
    buffer = io.BytesIO()
    shapes = _write(buffer, count, decode)
    return DecodedImages(np.frombuffer(buffer.getbuffer(), dtype=np.uint8), shapes)


def _write(handle: BinaryIO, count: int, decode: Callable[[int], np.ndarray]) -> np.ndarray:
    """Write the decoded images to ``handle`` back to back; their shapes."""
    shapes = np.empty((count, 3), dtype=np.int64)
    for i in range(count):
        image = np.ascontiguousarray(decode(i), dtype=np.uint8)
        handle.write(image.tobytes())
        shapes[i] = image.shape
    return shapes


def _shapes_path(data: Path) -> Path:
    return data.with_suffix(".shapes.npy")


def _save(data: Path, count: int, decode: Callable[[int], np.ndarray]) -> DecodedImages:
    """Decode into ``data`` and its shapes file (each written atomically), then map them."""
    data.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(data.parent)
    with atomic_path(data) as tmp, open(tmp, "wb") as handle:
        shapes = _write(handle, count, decode)
    with atomic_path(_shapes_path(data)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, shapes)
    loaded = _load(data, count)
    assert loaded is not None, "the files were just written"
    return loaded


def _load(data: Path, count: int) -> DecodedImages | None:
    """The images cached at ``data`` if both files exist, are readable and agree with each
    other and with ``count``."""
    try:
        shapes = np.load(_shapes_path(data))
        flat = np.memmap(data, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None
    if shapes.ndim != 2 or shapes.shape != (count, 3) or flat.size != shapes.prod(axis=1).sum():
        return None
    return DecodedImages(flat, shapes)
