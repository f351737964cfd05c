"""One training epoch: the student step every method shares, and the epoch that repeats it
over the batches and validates the student."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..data.augment import Augment
from ..distributed import all_reduce_sum, broadcast_buffers, is_distributed, rank, world_size
from ..errors import NonFiniteError
from ..methods import DistillMethod, StepOutputs
from ..precision import autocast, to_layout
from ..taps import LayerTaps, as_grid
from .config import TrainConfig, validation_epochs
from .evaluate import accuracy
from .state import TrainingState
from .teacher_cache import TeacherCache


class StudentStep(nn.Module):
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


def teacher_outputs(teacher: nn.Module, taps: LayerTaps | None, x: Tensor, device: torch.device,
                    precision: str) -> tuple[Tensor, dict[str, Tensor]]:
    """The frozen teacher's logits on ``x`` and its tapped maps as (B, C, H, W) grids."""
    with torch.no_grad(), autocast(device, precision):
        logits = teacher(x).float()
    return logits, {k: as_grid(v.float()) for k, v in (taps.outputs if taps else {}).items()}


def train_loader(train: Dataset, cfg: TrainConfig, generator: torch.Generator) -> DataLoader:
    """Shuffled training batches drawn with ``generator``; in a process group, this process's
    share of each epoch (DistributedSampler: equal shares, so the order is padded with a few
    repeated images)."""
    sampler: DistributedSampler | None = (DistributedSampler(train, seed=cfg.seed)
                                          if is_distributed() else None)
    size = len(train) if sampler is None else len(sampler)  # type: ignore[arg-type]
    # every image is used each epoch; only a last batch of one sample (which batch
    # normalisation cannot train on) is dropped
    return DataLoader(train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                      drop_last=size % cfg.batch_size == 1, num_workers=cfg.num_workers,
                      generator=generator)


def epoch_length(loader: DataLoader, cache: TeacherCache | None, batch_size: int) -> int:
    """The batches of one epoch of this process: the loader's, or the teacher cache's."""
    if cache is None:
        return len(loader)
    return cache.epoch_length(batch_size, shard=(rank(), world_size()))


def train_epoch(model: nn.Module, teacher: nn.Module | None, teacher_taps: LayerTaps | None,
                batches: Iterable, optimizer: torch.optim.Optimizer, augment: Augment | None,
                device: torch.device, epoch: int, cfg: TrainConfig,
                schedule: LRScheduler | None = None) -> dict[str, float]:
    """One pass over the training batches; returns mean loss terms and training accuracy
    (over all processes of a process group). A ``schedule`` given here steps after every
    batch (``train.lr_per_step``).

    ``model`` is a :class:`StudentStep`, or one wrapped in DistributedDataParallel. Forward
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
            teacher_logits, teacher_features = teacher_outputs(teacher, teacher_taps, x, device,
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
        if schedule is not None:
            schedule.step()
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


@dataclass
class EpochRunner:
    """Runs epoch after epoch of one run: the batches (from the loader, or the teacher cache),
    :func:`train_epoch`, the schedule's step and, on the epochs :func:`validation_epochs`
    names, the student's validation accuracy (and with ``train.test_curve`` its test accuracy,
    recorded, never used to choose weights, timed apart from the epoch)."""

    model: nn.Module  # the StudentStep, or it wrapped in DistributedDataParallel
    step: StudentStep
    teacher: nn.Module | None
    teacher_taps: LayerTaps | None
    loader: DataLoader
    cache: TeacherCache | None
    augment: Augment | None
    val: Dataset
    cfg: TrainConfig
    device: torch.device
    test: Dataset | None = None

    def __post_init__(self) -> None:
        self.validate_after = validation_epochs(self.cfg.epochs, self.cfg.evaluations)

    def batches(self, epoch: int, generator: torch.Generator, progress: bool) -> Iterable:
        """The training batches of 0-based ``epoch`` with a progress bar."""
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(epoch)
        batches: Iterable = self.loader if self.cache is None else self.cache.batches(
            self.cfg.batch_size, generator, shard=(rank(), world_size()))
        return tqdm(batches, total=epoch_length(self.loader, self.cache, self.cfg.batch_size),
                    desc=f"epoch {epoch + 1}", leave=False, disable=not progress)

    def __call__(self, state: TrainingState, progress: bool) -> dict[str, Any]:
        """Train the next epoch of ``state``; its metrics row (not yet recorded)."""
        epoch, started = state.epochs_done, time.perf_counter()
        self.step.epoch = epoch + 1
        if is_distributed():  # each process its own augmentations, reproducible on resume
            torch.manual_seed(int(np.random.SeedSequence(
                [self.cfg.seed, epoch, rank()]).generate_state(1)[0]))
        row = {"epoch": epoch + 1, "lr": state.optimizer.param_groups[0]["lr"],
               **train_epoch(self.model, self.teacher, self.teacher_taps,
                             self.batches(epoch, state.loader_rng, progress), state.optimizer,
                             self.augment, self.device, epoch, self.cfg,
                             state.schedule if self.cfg.lr_per_step else None)}
        if not self.cfg.lr_per_step:
            state.schedule.step()
        broadcast_buffers(self.step)  # rank 0's BatchNorm statistics, as DDP's next step would
        validated = epoch + 1 in self.validate_after
        if validated:
            row["val_accuracy"] = self._accuracy(self.val)
        row["seconds"] = time.perf_counter() - started
        if validated and self.cfg.test_curve and self.test is not None:
            row["test_accuracy"] = self._accuracy(self.test)
        return row

    def _accuracy(self, data: Dataset) -> float:
        return accuracy(self.step.student, data, self.device, self.cfg.eval_batch_size,
                        self.cfg.precision, sharded=True)
