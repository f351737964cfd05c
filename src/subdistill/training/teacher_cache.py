"""Teacher-output caching: run the frozen teacher once over fixed inputs, train from disk.

When the teacher sees fixed inputs (the training images, plus ``copies - 1`` augmented copies
of each drawn once with a seeded generator), its restricted logits and the layer maps the
losses compare are computed once and stored as memory-mapped ``.npy`` files. Each epoch then
visits every training image once, in a seeded random order, as one of its copies; the student
step is unchanged except that the teacher is not run. The cache lives in a folder named by a
hash of everything it depends on (teacher weights and subtask, inputs, copies, augmentation,
seed, layers, precision), so runs that share those (e.g. the methods of a benchmark cell)
share one cache, and a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from ..atomic import write_text
from ..console import show_bars
from ..data.augment import Augment
from ..distributed import even_shard, is_main
from ..errors import DataError
from ..fingerprint import model_fingerprint
from ..modes import frozen
from ..precision import autocast, to_layout
from ..subspace.fit import SubspaceStatistics
from ..taps import LayerTaps, as_grid
from .evaluate import accuracy

META = "meta.json"

log = logging.getLogger(__name__)


@dataclass
class CachedTeacher:
    """The teacher's outputs for one batch, read from the cache."""

    logits: Tensor
    features: dict[str, Tensor]


def _inputs(train: Dataset, batch_size: int) -> tuple[Tensor, Tensor]:
    with torch.random.fork_rng(devices=[]):  # a DataLoader draws a seed from the global RNG
        xs, ys = zip(*DataLoader(train, batch_size=batch_size, shuffle=False))
    return torch.cat(xs), torch.cat(ys)


def _content_hash(model: nn.Module, inputs: Tensor, labels: Tensor,
                  settings: dict[str, Any]) -> str:
    """Hash of a model's weights, a set of images and labels, and JSON ``settings``."""
    digest = hashlib.sha256()
    digest.update(model_fingerprint(model).encode())
    digest.update(inputs.contiguous().numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()[:20]


def cache_key(teacher: nn.Module, inputs: Tensor, labels: Tensor, *, copies: int, augment: str,
              seed: int, layers: Sequence[str], precision: str) -> str:
    """Hash of everything the cached outputs depend on."""
    return _content_hash(teacher, inputs, labels, {
        "copies": copies, "augment": augment if copies > 1 else "none", "seed": seed,
        "layers": list(layers), "precision": precision,
        "storage": np.dtype(storage_dtype(precision)).name})


def cached_accuracy(root: str | Path, model: nn.Module, data: Dataset, *,
                    device: torch.device | str = "cpu", batch_size: int = 256,
                    precision: str = "fp32") -> float:
    """:func:`accuracy` of a frozen ``model`` on ``data``, remembered under
    ``root/accuracy`` by a hash of the model, the data and the precision: the runs of a
    benchmark score their common teacher on each validation and test split once."""
    inputs, labels = _inputs(data, batch_size)
    key = _content_hash(model, inputs, labels, {"precision": precision})
    path = Path(root) / "accuracy" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())["accuracy"]
    value = accuracy(model, TensorDataset(inputs, labels), device, batch_size, precision,
                     sharded=True)  # the images loaded for the key, not a second pass
    if is_main():
        write_text(path, json.dumps({"accuracy": value, "images": len(labels)}) + "\n")
    return value


class TeacherCache:
    """Memory-mapped inputs, labels, teacher logits and teacher layer maps of a training set.

    Build (or reuse) one with :meth:`build`; iterate over an epoch of batches with
    :meth:`batches`.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        meta = json.loads((folder / META).read_text())
        self.layers: list[str] = meta["layers"]
        self.copies: int = meta["copies"]
        self.inputs = np.load(folder / "inputs.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy")
        self.logits = np.load(folder / "logits.npy", mmap_mode="r")
        self.features = {layer: np.load(folder / name, mmap_mode="r")
                         for layer, name in zip(self.layers, _layer_files(self.layers))}
        self.fed_statistics = False  # whether building it fed a subspace fit (see build)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def build(cls, root: str | Path, teacher: nn.Module, train: Dataset, layers: Sequence[str],
              *, copies: int = 1, augment: Augment | None = None, augment_name: str = "none",
              seed: int = 0, precision: str = "fp32", channels_last: bool = False,
              batch_size: int = 256, device: torch.device | str = "cpu",
              progress: bool = False, statistics: SubspaceStatistics | None = None,
              ) -> TeacherCache:
        """The cache of ``teacher`` on ``train`` under ``root``, computed unless present.

        ``statistics``: when the cache is computed here, the forward over the unaugmented
        images also feeds this subspace fit (one teacher pass for both; then
        ``cache.fed_statistics`` is True)."""
        inputs, labels = _inputs(train, batch_size)
        layers = list(dict.fromkeys(layers))
        key = cache_key(teacher, inputs, labels, copies=copies, augment=augment_name, seed=seed,
                        layers=layers, precision=precision)
        folder = Path(root) / key
        missing = _missing_files(folder)
        if not missing:
            return cls(folder)
        if (folder / META).is_file():  # written whole, then changed from outside: rebuild it
            log.warning("teacher cache %s lacks %s; computing it again", folder,
                        ", ".join(missing))
        partial = Path(root) / f".{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _write_outputs(partial, teacher, inputs, labels, layers, copies, augment, seed,
                       precision, channels_last, batch_size, torch.device(device), progress,
                       statistics)
        write_text(partial / META, json.dumps({"key": key, "layers": layers, "copies": copies,
                                               "images": len(labels)}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        cache = cls(folder)
        cache.fed_statistics = statistics is not None
        return cache

    def batches(self, batch_size: int, generator: torch.Generator, drop_last_single: bool = True,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor, CachedTeacher]]:
        """One epoch: every image once in a random order, each as a random copy. A last batch
        of one sample (which batch normalisation cannot train on) is dropped.

        ``shard = (rank, world_size)``: this process's share of the epoch (every process draws
        the same order from an identically seeded ``generator``; see :func:`even_shard`)."""
        n = len(self)
        order = torch.randperm(n, generator=generator)
        copy = (torch.randint(0, self.copies, (n,), generator=generator) if self.copies > 1
                else torch.zeros(n, dtype=torch.long))
        order = even_shard(order, *shard)
        n = len(order)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            if drop_last_single and len(index) == 1 and n > 1:
                return
            # sorted reads are sequential on disk; the batch order itself does not matter
            index = torch.sort(index).values
            c = copy[index].numpy()
            i = index.numpy()
            yield (_read(self.inputs, c, i), torch.from_numpy(self.labels[i]),
                   CachedTeacher(_read(self.logits, c, i),
                                 {layer: _read(f, c, i) for layer, f in self.features.items()}))

    def epoch_length(self, batch_size: int, shard: tuple[int, int] = (0, 1)) -> int:
        """Number of batches :meth:`batches` yields."""
        n = -(-len(self) // shard[1])
        full, rest = divmod(n, batch_size)
        return full + (1 if rest > 1 or (rest == 1 and n == 1) else 0)


def _layer_files(layers: Sequence[str]) -> list[str]:
    """The file of each cached layer map, in the order of ``layers``."""
    return [f"layer{i}.npy" for i in range(len(layers))]


def _missing_files(folder: Path) -> list[str]:
    """The files a complete cache folder has and ``folder`` lacks (all, without its META)."""
    if not (folder / META).is_file():
        return [META]
    layers = json.loads((folder / META).read_text())["layers"]
    names = ["inputs.npy", "labels.npy", "logits.npy", *_layer_files(layers)]
    return [name for name in names if not (folder / name).is_file()]


def storage_dtype(precision: str) -> type[np.floating]:
    """The dtype the cache stores its arrays in: float16 under bf16 training (whose autocast
    keeps fewer mantissa bits than float16: half the disk and page cache, so more augmented
    copies fit), float32 otherwise (a fp32 run reads exactly what the teacher computed)."""
    return np.float16 if precision == "bf16" else np.float32


def _read(array: np.ndarray, copies: np.ndarray, images: np.ndarray) -> Tensor:
    """Rows ``images`` of copies ``copies`` of a stored array, as a float32 tensor."""
    return torch.from_numpy(array[copies, images]).float()


def _write_outputs(folder: Path, teacher: nn.Module, inputs: Tensor, labels: Tensor,
                   layers: list[str], copies: int, augment: Augment | None, seed: int,
                   precision: str, channels_last: bool, batch_size: int, device: torch.device,
                   progress: bool, statistics: SubspaceStatistics | None = None) -> None:
    """Write the cache's arrays; copy 0 (unaugmented) also feeds ``statistics``, with the
    backward from the logit margin stopped at the shallowest tapped layer."""
    n = len(labels)
    np.save(folder / "labels.npy", labels.numpy())
    stores: dict[str, np.memmap] = {}

    dtype = storage_dtype(precision)

    def store(name: str, copy: int, window: slice, values: Tensor) -> None:
        if name not in stores:
            stores[name] = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+",
                                                     dtype=dtype,
                                                     shape=(copies, n, *values.shape[1:]))
        if dtype is np.float16 and bool((values.abs() > np.finfo(np.float16).max).any()):
            raise DataError(f"the teacher's {name} reach {values.abs().max().item():.3g}, "
                            "beyond float16, which the bf16 teacher cache stores; cache at "
                            "train.precision fp32")
        stores[name][copy, window] = values.numpy()

    tapped = list(dict.fromkeys([*layers, *(statistics.layers if statistics else [])]))
    steps = tqdm(total=copies * -(-n // batch_size), desc="teacher cache",
                 disable=not show_bars(progress))
    with ExitStack() as stack:
        stack.enter_context(frozen(teacher))
        taps = stack.enter_context(LayerTaps(teacher, tapped, grad_leaves=True))
        # copy 0 is unaugmented; copy c > 0 is drawn from a generator seeded by (seed, c),
        # leaving the global RNG as it was
        stack.enter_context(torch.random.fork_rng(devices=[]))
        to_layout(teacher, channels_last)
        for copy in range(copies):
            torch.manual_seed(seed * 1009 + copy)
            fit = statistics if copy == 0 else None
            for start in range(0, n, batch_size):
                x = inputs[start:start + batch_size]
                if copy > 0 and augment is not None:
                    x = augment(x)
                window = slice(start, start + len(x))
                with torch.set_grad_enabled(fit is not None), autocast(device, precision):
                    logits = teacher(to_layout(x.to(device), channels_last))
                if fit is not None:
                    fit.add(logits, taps.outputs)
                store("inputs", copy, window, x.float())
                store("logits", copy, window, logits.detach().float().cpu())
                for i, layer in enumerate(layers):
                    store(f"layer{i}", copy, window,
                          as_grid(taps.outputs[layer].detach().float()).cpu())
                steps.update()
    steps.close()
    for memmap in stores.values():
        memmap.flush()
