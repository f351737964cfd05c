"""The training loop shared by every method: distil a student from a frozen teacher."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..data.augment import build_augment
from ..distributed import (all_reduce_sum, broadcast_buffers, is_distributed, is_main,
                           local_device, main_first, rank, shard, world_size)
from ..errors import ConfigError, ModelError, NonFiniteError, closest
from ..frozen import frozen
from ..methods import DistillMethod, PrepareContext, StepOutputs, build_method, method_class
from ..methods.layerwise import LayerwiseMethod
from ..subtask import Subtask, restrict_teacher
from ..taps import LayerTaps, as_grid
from .calibration import CALIBRATION_BATCHES, calibrate, collapse_message
from .evaluate import accuracy
from .checkpoint import (CheckpointError, config_hash, load_checkpoint, rng_state,
                         save_checkpoint, set_rng_state)
from .optim import build_optimizer, build_schedule
from .precision import autocast, to_layout
from .pairs import probe_pairs
from .rundir import RunDirectory
from .teacher_cache import TeacherCache, cached_accuracy


log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
PRECISIONS = ("fp32", "bf16")
# training settings that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = ("progress", "num_workers", "device", "eval_batch_size")


def run_fingerprint(settings: Mapping[str, Any]) -> str:
    """Hash of a run's settings (with a ``train`` mapping) that must not change when it is
    resumed: training options that may change (:data:`RESUMABLE_CHANGES`) and options at
    their default value are left out, so options added to a later version keep old runs
    resumable."""
    defaults = asdict(TrainConfig())
    train = {k: v for k, v in settings["train"].items()
             if k not in RESUMABLE_CHANGES and (k not in defaults or defaults[k] != v)}
    return config_hash({**settings, "train": train})


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
    evaluations: int = 0
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
        for name in ("weight_decay", "momentum", "num_workers", "warmup_epochs", "evaluations"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"train.{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"train.seed must be in [0, 2**32), got {self.seed}")
        check_device(self.device)


def validation_epochs(epochs: int, evaluations: int) -> set[int]:
    """The (1-based) epochs after which the student is validated: ``evaluations`` evenly
    spaced ones ending with the last epoch, or every epoch when ``evaluations`` is 0."""
    if evaluations == 0 or evaluations >= epochs:
        return set(range(1, epochs + 1))
    return {round(epochs * i / evaluations) for i in range(1, evaluations + 1)}


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


class _StudentStep(nn.Module):
    """The student and the method's heads as one module whose forward gives a training step's
    loss terms (and the student's logits), so that DistributedDataParallel can wrap both."""

    def __init__(self, student: nn.Module, algorithm: DistillMethod, taps: LayerTaps,
                 device: torch.device, precision: str, epochs: int = 1):
        super().__init__()
        self.student, self.algorithm = student, algorithm
        self.taps, self.device, self.precision = taps, device, precision
        self.epoch, self.epochs = 1, epochs  # the trainer sets the epoch (from 1) as it goes

    def step_outputs(self, x: Tensor, y: Tensor, teacher_logits: Tensor | None,
                     teacher_features: dict[str, Tensor]) -> StepOutputs:
        """The student's forward on ``x`` and what the method needs of this step."""
        with autocast(self.device, self.precision):
            logits = self.student(x).float()
        return StepOutputs(
            student_logits=logits, labels=y, teacher_logits=teacher_logits,
            student_features={k: as_grid(v.float()) for k, v in self.taps.outputs.items()},
            teacher_features=teacher_features, epoch=self.epoch, epochs=self.epochs)

    def forward(self, x: Tensor, y: Tensor, teacher_logits: Tensor | None,
                teacher_features: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        outputs = self.step_outputs(x, y, teacher_logits, teacher_features)
        return self.algorithm(outputs), outputs.student_logits


def _teacher_outputs(teacher: nn.Module, taps: LayerTaps, x: Tensor, device: torch.device,
                     precision: str) -> tuple[Tensor, dict[str, Tensor]]:
    """The frozen teacher's logits on ``x`` and its tapped maps as (B, C, H, W) grids."""
    with torch.no_grad(), autocast(device, precision):
        logits = teacher(x).float()
    return logits, {k: as_grid(v.float()) for k, v in taps.outputs.items()}


def _calibration_batches(train: Dataset, cfg: TrainConfig,
                         device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """The first unaugmented training batches, in order (the same in every process). The
    loader has a generator of its own, so the global random state is not touched."""
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=False,
                        generator=torch.Generator())
    batches = []
    for x, y, *_ in loader:
        if len(batches) == CALIBRATION_BATCHES:
            break
        if x.shape[0] > 1 or not batches:  # batch normalisation cannot train on one image
            batches.append((to_layout(x.to(device), cfg.channels_last), y.to(device)))
    return batches


def _train_epoch(model: nn.Module, teacher: nn.Module | None, teacher_taps: LayerTaps | None,
                 batches, optimizer: torch.optim.Optimizer, augment, device: torch.device,
                 epoch: int, cfg: TrainConfig) -> dict[str, float]:
    """One pass over the training batches; returns mean loss terms and training accuracy
    (over all processes of a process group).

    ``model`` is a :class:`_StudentStep`, or one wrapped in DistributedDataParallel. Forward
    passes run under ``cfg.precision``; the loss terms are computed in float32."""
    model.train()
    sums: dict[str, float] = {}
    steps = correct = seen = 0
    for step, (x, y, *cached) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        if augment is not None and not cached:
            x = augment(x)
        x = to_layout(x, cfg.channels_last)
        teacher_logits, teacher_features = None, {}
        if cached:
            teacher_logits = cached[0].logits.to(device)
            teacher_features = {k: v.to(device) for k, v in cached[0].features.items()}
        elif teacher is not None:
            teacher_logits, teacher_features = _teacher_outputs(teacher, teacher_taps, x, device,
                                                                cfg.precision)
        terms, logits = model(x, y, teacher_logits, teacher_features)
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
        correct += int((logits.argmax(-1) == y).sum())
        seen += y.numel()
    totals = torch.tensor([steps, correct, seen, *sums.values()], dtype=torch.float64,
                          device=device)
    all_reduce_sum([totals])
    steps, correct, seen, *values = totals.tolist()
    steps = max(steps, 1)
    return {"loss": sum(values) / steps,
            **{f"loss/{k}": v / steps for k, v in zip(sums, values)},
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
    on the unaugmented ``train`` data; in a process group each process takes its share)."""
    cfg = config or TrainConfig()
    device = local_device(cfg.device)
    algorithm = build_checked_method(teacher, student, train, method=method, pairs=pairs,
                                     options=options, device=device)
    fit_loader = DataLoader(shard(train), batch_size=cfg.eval_batch_size, shuffle=False,
                            num_workers=cfg.num_workers)
    teacher = teacher if algorithm.needs_teacher else None
    algorithm.prepare(PrepareContext(teacher, fit_loader, device, cfg.seed, run_dir,
                                     cfg.progress and is_main(), (rank(), world_size())))
    return algorithm.to(device)


def _train_loader(train: Dataset, cfg: TrainConfig) -> DataLoader:
    """Shuffled training batches; in a process group, this process's share of each epoch
    (DistributedSampler: equal shares, so the order is padded with a few repeated images)."""
    sampler = DistributedSampler(train, seed=cfg.seed) if is_distributed() else None
    size = len(train) if sampler is None else len(sampler)
    # every image is used each epoch; only a last batch of one sample (which batch
    # normalisation cannot train on) is dropped
    return DataLoader(train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                      drop_last=size % cfg.batch_size == 1, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed))


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

    Called by every process inside :func:`subdistill.distributed.process_group` (``torchrun``),
    it trains with DistributedDataParallel: ``batch_size`` is per process, each process fits
    and scores its share of the data, and only rank 0 writes ``run_dir``.
    """
    cfg = _config(config, overrides)
    seed_everything(cfg.seed)
    if method_class(method).needs_teacher and teacher is None:
        raise ConfigError(f"method {method} needs a teacher")
    if teacher is not None and subtask is not None:
        teacher = restrict_teacher(teacher, subtask)
    settings = {"method": method, "options": dict(options or {}), "pairs": dict(pairs or {}),
                "train": asdict(cfg)}
    if resume and run_dir is None:
        raise ConfigError("resume needs a run directory")
    main = is_main()  # in a process group only rank 0 writes files and shows progress
    progress = cfg.progress and main
    run = RunDirectory(run_dir) if run_dir is not None and main else None
    checkpoint_file = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    resuming = resume and checkpoint_file.is_file()
    if run is not None and not resuming:
        run.write_config(dict(record) if record is not None else settings)
    algorithm = setup_method(teacher, student, train, method=method, pairs=pairs,
                             options=options, config=cfg, run_dir=run_dir)
    device = local_device(cfg.device)
    teacher = teacher if algorithm.needs_teacher else None
    layer_pairs = algorithm.pairs
    to_layout(student, cfg.channels_last)
    if teacher is not None:
        to_layout(teacher, cfg.channels_last)

    params = list(student.parameters()) + list(algorithm.parameters())
    optimizer = build_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    schedule = build_schedule(optimizer, cfg.schedule, cfg.epochs, cfg.step_size, cfg.gamma,
                              cfg.warmup_epochs)
    train_loader = _train_loader(train, cfg)
    augment = build_augment(cfg.augment, int(train[0][0].shape[-1]))
    cache = None
    if cfg.teacher_cache and teacher is not None:
        with main_first():  # rank 0 computes the cache, the others then open it
            cache = TeacherCache.build(
                cfg.teacher_cache, teacher, train, [p.teacher for p in layer_pairs],
                copies=cfg.cache_copies, augment=augment, augment_name=cfg.augment,
                seed=cfg.seed, precision=cfg.precision, channels_last=cfg.channels_last,
                batch_size=cfg.eval_batch_size, device=device, progress=progress)

    loader_rng = train_loader.generator
    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "val_accuracy": -1.0, "state": None}
    fingerprint = run_fingerprint(settings)
    if resuming:
        state = load_checkpoint(checkpoint_file, fingerprint)
        student.load_state_dict(state["student"])
        try:
            algorithm.load_state_dict(state["method"])
        except RuntimeError as err:
            reason = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise CheckpointError(f"{checkpoint_file} holds a method state this version cannot "
                                  f"restore ({reason}); it was probably written by an older "
                                  "subdistill: start the run in a new run directory") from None
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        loader_rng.set_state(state["loader_rng"])
        history, best = state["history"], state["best"]
        if run is not None:
            run.rewrite_metrics(history)
    shard_of = (rank(), world_size())
    epochs = tqdm(range(len(history), cfg.epochs), desc=f"{method}", disable=not progress,
                  initial=len(history), total=cfg.epochs)
    with ExitStack() as stack:
        student_taps = stack.enter_context(LayerTaps(student, [p.student for p in layer_pairs]))
        teacher_taps = None
        if teacher is not None:
            stack.enter_context(frozen(teacher))
            teacher_taps = stack.enter_context(
                LayerTaps(teacher, [p.teacher for p in layer_pairs]))
        step = model = _StudentStep(student, algorithm, student_taps, device, cfg.precision,
                                    cfg.epochs)
        if isinstance(algorithm, LayerwiseMethod) and not resuming:
            calibrate(algorithm, student, lambda x, y: step.step_outputs(
                x, y, *_teacher_outputs(teacher, teacher_taps, x, device, cfg.precision)),
                _calibration_batches(train, cfg, device))
        if is_distributed():  # gradients of student and heads are averaged over processes
            model = DistributedDataParallel(
                step, device_ids=[device.index] if device.type == "cuda" else None)
        validate_after = validation_epochs(cfg.epochs, cfg.evaluations)
        classes, collapse_reported = _num_classes(train), False
        for epoch in epochs:
            started = time.perf_counter()
            step.epoch = epoch + 1
            if is_distributed():  # each process its own augmentations, reproducible on resume
                torch.manual_seed(int(np.random.SeedSequence(
                    [cfg.seed, epoch, rank()]).generate_state(1)[0]))
            if isinstance(train_loader.sampler, DistributedSampler):
                train_loader.sampler.set_epoch(epoch)
            batches = tqdm(train_loader if cache is None else
                           cache.batches(cfg.batch_size, loader_rng, shard=shard_of),
                           total=len(train_loader) if cache is None else
                           cache.epoch_length(cfg.batch_size, shard=shard_of),
                           desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   **_train_epoch(model, teacher, teacher_taps, batches, optimizer, augment,
                                  device, epoch, cfg)}
            schedule.step()
            broadcast_buffers(step)  # rank 0's BatchNorm statistics, as DDP's next step would
            if epoch + 1 in validate_after:
                row["val_accuracy"] = accuracy(student, val, device, cfg.eval_batch_size,
                                               cfg.precision, sharded=True)
            row["seconds"] = time.perf_counter() - started
            history.append(row)
            collapse = None if collapse_reported else collapse_message(history, classes, cfg.epochs)
            if collapse is not None and main:
                log.warning("%s: %s", method, collapse)
                collapse_reported = True
            if row.get("val_accuracy", -1.0) > best["val_accuracy"]:
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
            epochs.set_postfix(loss=f"{row['loss']:.3f}",
                               val=f"{row.get('val_accuracy', float('nan')):.3f}",
                               best=f"{best['val_accuracy']:.3f}")

    if best["state"] is not None:
        student.load_state_dict(best["state"])

    def evaluate(model: nn.Module | None, data: Dataset | None) -> float | None:
        return None if model is None or data is None else accuracy(
            model, data, device, cfg.eval_batch_size, cfg.precision, sharded=True)

    def evaluate_teacher(data: Dataset | None) -> float | None:
        if teacher is None or data is None or not cfg.teacher_cache:
            return evaluate(teacher, data)
        return cached_accuracy(cfg.teacher_cache, teacher, data, device=device,
                               batch_size=cfg.eval_batch_size, precision=cfg.precision)

    result = DistillResult(
        student=student, method=algorithm, best_epoch=best["epoch"],
        best_val_accuracy=best["val_accuracy"], test_accuracy=evaluate(student, test),
        teacher_val_accuracy=evaluate_teacher(val), teacher_test_accuracy=evaluate_teacher(test),
        history=history, run_dir=Path(run_dir) if run_dir is not None else None,
    )
    if run is not None:
        run.write_summary({
            "method": method, "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy, "test_accuracy": result.test_accuracy,
            "teacher_val_accuracy": result.teacher_val_accuracy,
            "teacher_test_accuracy": result.teacher_test_accuracy,
            "student_parameters": sum(p.numel() for p in student.parameters()),
            "epochs": cfg.epochs, "seconds": sum(row["seconds"] for row in history),
            **({"layer_weights": algorithm.named_weights()}
               if isinstance(algorithm, LayerwiseMethod) else {})})
    return result
