"""The training loop shared by every method: distil a student from a frozen teacher."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.augment import build_augment
from ..errors import ConfigError, ModelError, NonFiniteError, closest
from ..frozen import frozen
from ..methods import DistillMethod, PrepareContext, StepOutputs, build_method, method_class
from ..subtask import Subtask, restrict_teacher
from ..taps import LayerTaps, as_grid
from .evaluate import accuracy
from .checkpoint import config_hash, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .optim import build_optimizer, build_schedule
from .precision import autocast, to_layout
from .pairs import probe_pairs
from .rundir import RunDirectory
from .teacher_cache import TeacherCache


CHECKPOINT = "checkpoint.pt"
PRECISIONS = ("fp32", "bf16")
# training settings that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = ("progress", "num_workers", "device", "eval_batch_size")


@dataclass
class TrainConfig:
    """Optimisation schedule and loop settings (defaults: the paper's reference schedule)."""

    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "step"
    step_size: int = 25
    gamma: float = 0.5
    warmup_epochs: int = 0
    augment: str = "none"
    precision: str = "fp32"
    channels_last: bool = False
    teacher_cache: str = ""
    cache_copies: int = 1
    eval_batch_size: int = 256
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "step_size": self.step_size, "gamma": self.gamma,
                    "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"train.{name} must be positive, got {value}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got "
                              f"{self.precision!r}")
        if self.cache_copies < 1:
            raise ConfigError(f"train.cache_copies must be >= 1, got {self.cache_copies}")
        if self.teacher_cache and self.augment != "none" and self.cache_copies == 1:
            raise ConfigError(f"train.teacher_cache with train.augment={self.augment!r} and "
                              "cache_copies=1 would train on unaugmented images only: set "
                              "cache_copies >= 2 (the original plus augmented copies) or "
                              "augment: none")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"train.warmup_epochs ({self.warmup_epochs}) must be fewer than "
                              f"train.epochs ({self.epochs})")
        for name in ("weight_decay", "momentum", "num_workers", "warmup_epochs"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"train.{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"train.seed must be in [0, 2**32), got {self.seed}")
        check_device(self.device)


def check_device(name: str) -> torch.device:
    """The torch device called ``name``, if this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, "
                          "mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"train.device {name!r}: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device is {name!r} but MPS is not available here; use cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device {name!r}: only cpu, cuda and mps are supported")
    return device


@dataclass
class DistillResult:
    """Outcome of :func:`distill`: the student with its best-validation weights and the scores."""

    student: nn.Module
    method: DistillMethod
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float | None
    teacher_val_accuracy: float | None
    teacher_test_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _num_classes(dataset: Dataset) -> int:
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    return int(max(int(dataset[i][1]) for i in range(len(dataset)))) + 1


def _check_outputs(teacher: nn.Module | None, student: nn.Module, example: torch.Tensor,
                   classes: int) -> None:
    with torch.no_grad():
        for role, model in (("student", student), ("teacher", teacher)):
            if model is None:
                continue
            was_training = model.training
            model.eval()
            width = model(example).shape[-1]
            model.train(was_training)
            if width != classes:
                hint = (" Restrict the teacher to the subtask (pass subtask= or use "
                        "restrict_teacher)." if role == "teacher" else "")
                raise ModelError(f"the {role} outputs {width} logits but the data has {classes} "
                                 f"classes.{hint}")


def _config(config: TrainConfig | None, overrides: Mapping[str, Any]) -> TrainConfig:
    names = [f.name for f in fields(TrainConfig)]
    for key in overrides:
        if key not in names:
            raise ConfigError(f"unknown training option {key!r}.{closest(key, names)}")
    return replace(config or TrainConfig(), **overrides)


@dataclass
class _Taps:
    """The teacher's (None without a teacher) and the student's layer taps."""

    teacher: LayerTaps | None
    student: LayerTaps


def _train_epoch(student: nn.Module, teacher: nn.Module | None, algorithm: DistillMethod,
                 taps: _Taps, batches, optimizer: torch.optim.Optimizer, augment,
                 device: torch.device, epoch: int, cfg: TrainConfig) -> dict[str, float]:
    """One pass over the training batches; returns mean loss terms and training accuracy.

    Forward passes run under ``cfg.precision``; the loss terms are computed in float32."""
    student.train()
    algorithm.train()
    sums: dict[str, float] = {}
    steps = correct = seen = 0
    for step, (x, y, *cached) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        if augment is not None and not cached:
            x = augment(x)
        x = to_layout(x, cfg.channels_last)
        with autocast(device, cfg.precision):
            outputs = StepOutputs(student_logits=student(x).float(), labels=y)
            if teacher is not None and not cached:
                with torch.no_grad():
                    outputs.teacher_logits = teacher(x).float()
        outputs.student_features = {k: as_grid(v.float())
                                    for k, v in taps.student.outputs.items()}
        if cached:
            outputs.teacher_logits = cached[0].logits.to(device)
            outputs.teacher_features = {k: v.to(device) for k, v in cached[0].features.items()}
        elif teacher is not None:
            outputs.teacher_features = {k: as_grid(v.float())
                                        for k, v in taps.teacher.outputs.items()}
        terms = algorithm(outputs)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            bad = [k for k, v in terms.items() if not torch.isfinite(v)]
            raise NonFiniteError(f"non-finite loss term(s) {', '.join(bad)} at epoch "
                                     f"{epoch + 1}, step {step + 1}; lower the learning rate or "
                                     "check the inputs")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        steps += 1
        correct += int((outputs.student_logits.argmax(-1) == y).sum())
        seen += y.numel()
    steps = max(steps, 1)
    return {"loss": sum(sums.values()) / steps, **{f"loss/{k}": v / steps for k, v in sums.items()},
            "train_accuracy": correct / max(seen, 1)}


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
    example = torch.stack([train[i][0] for i in range(min(2, len(train)))]).to(device)
    _check_outputs(teacher, student, example, _num_classes(train))
    pairs = dict(pairs or {}) if method_cls.uses_layers else {}
    layer_pairs = probe_pairs(teacher, student, pairs, example) if pairs else []
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
    """:func:`build_checked_method`, then prepare the method (e.g. fit SubDistill's subspaces
    on the unaugmented ``train`` data)."""
    cfg = config or TrainConfig()
    device = torch.device(cfg.device)
    algorithm = build_checked_method(teacher, student, train, method=method, pairs=pairs,
                                     options=options, device=device)
    fit_loader = DataLoader(train, batch_size=cfg.eval_batch_size, shuffle=False,
                            num_workers=cfg.num_workers)
    teacher = teacher if algorithm.needs_teacher else None
    algorithm.prepare(PrepareContext(teacher, fit_loader, device, cfg.seed, run_dir, cfg.progress))
    return algorithm.to(device)


def distill(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Dataset,
    val: Dataset,
    *,
    method: str = "subdistill",
    pairs: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    test: Dataset | None = None,
    subtask: Subtask | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    record: Mapping[str, Any] | None = None,
    resume: bool = False,
    **overrides: Any,
) -> DistillResult:
    """Train ``student`` on ``train`` with ``method``; keep the best-validation weights.

    ``teacher`` must output the subtask's logits, or pass ``subtask`` to restrict it here.
    ``pairs`` maps teacher layer paths to student layer paths. ``options`` are the method's
    hyper-parameters (``subdistill methods`` lists them); training settings come from
    ``config`` and keyword ``overrides`` (see :class:`TrainConfig`). Labels are used only for
    model selection and evaluation unless the method itself uses them. With ``run_dir`` a
    checkpoint is written after every epoch; ``resume=True`` continues from it.
    """
    cfg = _config(config, overrides)
    seed_everything(cfg.seed)
    if method_class(method).needs_teacher and teacher is None:
        raise ConfigError(f"method {method} needs a teacher")
    if teacher is not None and subtask is not None:
        teacher = restrict_teacher(teacher, subtask)
    settings = {"method": method, "options": dict(options or {}), "pairs": dict(pairs or {}),
                "train": asdict(cfg)}
    run = RunDirectory(run_dir) if run_dir is not None else None
    if resume and run is None:
        raise ConfigError("resume needs a run directory")
    checkpoint_file = run.path / CHECKPOINT if run is not None else None
    resuming = resume and checkpoint_file.is_file()
    if run is not None and not resuming:
        run.write_config(dict(record) if record is not None else settings)
    algorithm = setup_method(teacher, student, train, method=method, pairs=pairs,
                             options=options, config=cfg, run_dir=run_dir)
    device = torch.device(cfg.device)
    teacher = teacher if algorithm.needs_teacher else None
    layer_pairs = algorithm.pairs
    to_layout(student, cfg.channels_last)
    if teacher is not None:
        to_layout(teacher, cfg.channels_last)

    params = list(student.parameters()) + list(algorithm.parameters())
    optimizer = build_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    schedule = build_schedule(optimizer, cfg.schedule, cfg.epochs, cfg.step_size, cfg.gamma,
                              cfg.warmup_epochs)
    # every image is used each epoch; only a last batch of one sample (which batch
    # normalisation cannot train on) is dropped
    train_loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True,
                              drop_last=len(train) % cfg.batch_size == 1,
                              num_workers=cfg.num_workers,
                              generator=torch.Generator().manual_seed(cfg.seed))
    augment = build_augment(cfg.augment, int(train[0][0].shape[-1]))
    cache = None
    if cfg.teacher_cache and teacher is not None:
        cache = TeacherCache.build(
            cfg.teacher_cache, teacher, train, [p.teacher for p in layer_pairs],
            copies=cfg.cache_copies, augment=augment, augment_name=cfg.augment, seed=cfg.seed,
            precision=cfg.precision, channels_last=cfg.channels_last,
            batch_size=cfg.eval_batch_size, device=device, progress=cfg.progress)

    loader_rng = train_loader.generator
    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "val_accuracy": -1.0, "state": None}
    fingerprint = config_hash({**settings, "train": {
        k: v for k, v in settings["train"].items() if k not in RESUMABLE_CHANGES}})
    if resuming:
        state = load_checkpoint(checkpoint_file, fingerprint)
        student.load_state_dict(state["student"])
        algorithm.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        loader_rng.set_state(state["loader_rng"])
        history, best = state["history"], state["best"]
        run.rewrite_metrics(history)
    epochs = tqdm(range(len(history), cfg.epochs), desc=f"{method}", disable=not cfg.progress,
                  initial=len(history), total=cfg.epochs)
    with ExitStack() as stack:
        taps = _Taps(None, stack.enter_context(LayerTaps(student, [p.student for p in layer_pairs])))
        if teacher is not None:
            stack.enter_context(frozen(teacher))
            taps.teacher = stack.enter_context(LayerTaps(teacher, [p.teacher for p in layer_pairs]))
        for epoch in epochs:
            started = time.perf_counter()
            batches = tqdm(train_loader if cache is None else
                           cache.batches(cfg.batch_size, loader_rng),
                           total=len(train_loader) if cache is None else
                           cache.epoch_length(cfg.batch_size),
                           desc=f"epoch {epoch + 1}", leave=False, disable=not cfg.progress)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   **_train_epoch(student, teacher, algorithm, taps, batches, optimizer, augment,
                                  device, epoch, cfg)}
            schedule.step()
            row["val_accuracy"] = accuracy(student, val, device, cfg.eval_batch_size,
                                           cfg.precision)
            row["seconds"] = time.perf_counter() - started
            history.append(row)
            if row["val_accuracy"] > best["val_accuracy"]:
                best = {"epoch": epoch + 1, "val_accuracy": row["val_accuracy"],
                        "state": copy.deepcopy(student.state_dict())}
                if run is not None:
                    run.save_model(student, "best")
            if run is not None:
                run.save_model(student, "last")
                save_checkpoint(checkpoint_file, {
                    "config_hash": fingerprint, "student": student.state_dict(),
                    "method": algorithm.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": rng_state(),
                    "loader_rng": loader_rng.get_state(), "history": history, "best": best})
                run.log_metrics(row)
            epochs.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row['val_accuracy']:.3f}",
                               best=f"{best['val_accuracy']:.3f}")

    if best["state"] is not None:
        student.load_state_dict(best["state"])

    def evaluate(model: nn.Module | None, data: Dataset | None) -> float | None:
        return None if model is None or data is None else accuracy(
            model, data, device, cfg.eval_batch_size, cfg.precision)

    result = DistillResult(
        student=student, method=algorithm, best_epoch=best["epoch"],
        best_val_accuracy=best["val_accuracy"], test_accuracy=evaluate(student, test),
        teacher_val_accuracy=evaluate(teacher, val), teacher_test_accuracy=evaluate(teacher, test),
        history=history, run_dir=run.path if run is not None else None,
    )
    if run is not None:
        run.write_summary({
            "method": method, "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy, "test_accuracy": result.test_accuracy,
            "teacher_val_accuracy": result.teacher_val_accuracy,
            "teacher_test_accuracy": result.teacher_test_accuracy,
            "student_parameters": sum(p.numel() for p in student.parameters()),
            "epochs": cfg.epochs, "seconds": sum(row["seconds"] for row in history)})
    return result
