"""Before training: check the models against the data, resolve the layer pairs, build and
prepare the method."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.labels import dataset_classes, dataset_targets
from ..distributed import all_reduce_sum, is_main, local_device, rank, shard, world_size
from ..errors import ConfigError, ModelError, first_line
from ..fingerprint import data_fingerprint
from ..methods import DistillMethod, PrepareContext, build_method, method_class
from ..models.inspect import FORWARD_ERRORS
from ..modes import eval_mode
from .config import TrainConfig
from .pairs import probe_pairs


def num_classes(dataset: Dataset) -> int:
    """The number of classes of ``dataset``: ``len(dataset.classes)``, else the largest label
    + 1 (both found without reading images where the dataset or what it wraps has them)."""
    classes = dataset_classes(dataset)
    if classes is not None:
        return len(classes)
    return int(dataset_targets(dataset).max()) + 1


def check_outputs(teacher: nn.Module | None, student: nn.Module, example: torch.Tensor,
                  classes: int) -> None:
    """Both models output one logit per class of the data (a clear error otherwise)."""
    for role, model in (("student", student), ("teacher", teacher)):
        if model is None:
            continue
        try:
            with eval_mode(model), torch.no_grad():
                width = model(example).shape[-1]
        except FORWARD_ERRORS as err:
            raise ModelError(f"the {role} cannot run on the data's "
                             f"{'x'.join(map(str, example.shape[1:]))} images "
                             f"({first_line(err)})") from None
        if width != classes:
            hint = (" Restrict the teacher to the subtask (pass subtask= or use "
                    "restrict_teacher)." if role == "teacher" else "")
            raise ModelError(f"the {role} outputs {width} logits but the data has {classes} "
                             f"classes.{hint}")


def build_checked_method(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Dataset,
    *,
    method: str,
    pairs: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> DistillMethod:
    """Check the models' outputs against the data, resolve the layer pairs on one example
    batch and build the method (its options and pair shapes validated); nothing is trained."""
    method_cls = method_class(method)
    teacher = teacher if method_cls.needs_teacher else None
    student.to(device)
    if teacher is not None:
        teacher.to(device)
    example = torch.stack([train[i][0] for i in range(min(2, len(train)))]).to(device)  # type: ignore[arg-type]
    check_outputs(teacher, student, example, num_classes(train))
    pairs = dict(pairs or {}) if method_cls.uses_layers else {}
    if pairs and teacher is None:
        raise ConfigError(f"method {method} distils the teacher's layers: give a teacher")
    layer_pairs = probe_pairs(teacher, student, pairs, example) if teacher is not None else []
    return build_method(method, layer_pairs, **dict(options or {}))


def setup_method(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Dataset,
    *,
    method: str,
    pairs: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
) -> DistillMethod:
    """:func:`build_checked_method`, then :func:`prepare_method`."""
    cfg = config or TrainConfig()
    algorithm = build_checked_method(teacher, student, train, method=method, pairs=pairs,
                                     options=options, device=local_device(cfg.device))
    return prepare_method(algorithm, teacher, train, cfg, run_dir)


def prepare_method(algorithm: DistillMethod, teacher: nn.Module | None, train: Dataset,
                   cfg: TrainConfig, run_dir: str | Path | None = None,
                   train_fingerprint: str | None = None,
                   teacher_pass: Callable[[Any], bool] | None = None) -> DistillMethod:
    """Prepare a built method (e.g. fit SubDistill's subspaces on the unaugmented ``train``
    data, or load them from ``run_dir``; in a process group each process takes its share).
    ``train_fingerprint``: :func:`~subdistill.fingerprint.data_fingerprint` of ``train``, when
    the caller has it already; ``teacher_pass``: the run's own teacher pass offered to a fit
    (:class:`~subdistill.methods.PrepareContext`)."""
    device = local_device(cfg.device)
    share = shard(train)
    _check_every_process_has_images(len(share), len(train), device)  # type: ignore[arg-type]
    fit_loader = DataLoader(share, batch_size=cfg.eval_batch_size, shuffle=False,
                            num_workers=cfg.num_workers, generator=torch.Generator())
    teacher = teacher if algorithm.needs_teacher else None
    algorithm.prepare(PrepareContext(teacher, fit_loader, device, cfg.seed, run_dir,
                                     cfg.progress and is_main(), (rank(), world_size()),
                                     data=train_fingerprint or data_fingerprint(train),
                                     precision=cfg.precision, channels_last=cfg.channels_last,
                                     teacher_pass=teacher_pass))
    return algorithm.to(device)


def _check_every_process_has_images(count: int, total: int, device: torch.device) -> None:
    """In a process group, fail on every process (not hang) when one gets no images."""
    empty = torch.tensor([float(count == 0)], device=device)
    all_reduce_sum([empty])
    if empty.item() > 0:
        raise ConfigError(f"{int(empty.item())} of {world_size()} processes get no training image "
                          f"({total} images): start fewer processes")


INIT_IMAGES = 5000  # training images a data-dependent initialisation sees


def init_from_data(model: nn.Module, train: Dataset, device: torch.device, seed: int) -> int:
    """Give every submodule of ``model`` that defines ``init_from_data(images)`` (a
    data-dependent initialisation, such as :class:`~subdistill.models.fast_cnn.FastCNN`'s
    patch-whitening stem) :data:`INIT_IMAGES` training images, unaugmented, drawn with
    ``seed`` (datasets are often stored class by class; every process draws the same); the
    number of images given (0: no submodule has the hook)."""
    hooks: list[Callable[[torch.Tensor], None]] = [
        m.init_from_data for m in model.modules()  # type: ignore[misc]
        if callable(getattr(m, "init_from_data", None))]
    if not hooks:
        return 0
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    images = torch.stack([train[int(i)][0] for i in order[:INIT_IMAGES]]).to(device)
    with torch.no_grad():
        for hook in hooks:
            hook(images)
    return len(images)
