"""What a run has learnt so far, as one object a checkpoint saves and restores."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..methods import DistillMethod
from .checkpoint import CheckpointError, rng_state, set_rng_state
from .config import TrainConfig
from .optim import build_optimizer, build_schedule, parameter_groups


def _no_best() -> dict[str, Any]:
    return {"epoch": -1, "val_accuracy": -1.0, "state": None}


@dataclass
class TrainingState:
    """The student, the method's heads, optimiser, schedule, the training order's generator,
    the metrics of the finished epochs and the best-validation weights: with the global RNG
    states (:meth:`state_dict` adds them) everything an exactly resumed run needs."""

    student: nn.Module
    method: DistillMethod
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    loader_rng: torch.Generator
    schedule_steps: int = 1  # schedule steps per epoch: 1, or the batches with lr_per_step
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=_no_best)

    @classmethod
    def create(cls, student: nn.Module, method: DistillMethod, cfg: TrainConfig,
               loader_rng: torch.Generator, steps_per_epoch: int = 1) -> TrainingState:
        """A fresh state: the optimiser over the student's and the heads' parameters
        (:func:`parameter_groups`), the schedule (stepped per batch with ``cfg.lr_per_step``,
        an epoch being ``steps_per_epoch`` batches) and ``loader_rng``, the generator of the
        order of the batches."""
        groups = parameter_groups((student, method), cfg.lr, cfg.weight_decay,
                                  cfg.norm_bias_lr_scale)
        optimizer = build_optimizer(groups, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        steps = steps_per_epoch if cfg.lr_per_step else 1
        schedule = build_schedule(optimizer, cfg.schedule, cfg.epochs, cfg.step_size, cfg.gamma,
                                  cfg.warmup_epochs, steps)
        return cls(student, method, optimizer, schedule, loader_rng, steps)

    @property
    def epochs_done(self) -> int:
        """Number of finished epochs."""
        return len(self.history)

    def record(self, row: dict[str, Any]) -> bool:
        """Add a finished epoch's metrics; True (and the student's weights kept) when its
        validation accuracy is the best so far."""
        self.history.append(row)
        if row.get("val_accuracy", -1.0) <= self.best["val_accuracy"]:
            return False
        self.best = {"epoch": row["epoch"], "val_accuracy": row["val_accuracy"],
                     "state": copy.deepcopy(self.student.state_dict())}
        return True

    def restore_best(self) -> None:
        """Load the best-validation weights into the student (if any epoch was validated)."""
        if self.best["state"] is not None:
            self.student.load_state_dict(self.best["state"])

    def state_dict(self) -> dict[str, Any]:
        """Everything above as tensors and plain containers, with the global RNG states."""
        return {"student": self.student.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "rng": rng_state(), "loader_rng": self.loader_rng.get_state(),
                "history": self.history, "best": self.best}

    def load_state_dict(self, state: dict[str, Any], source: str | Path = "the checkpoint") -> None:
        """Restore what :meth:`state_dict` gave (``source`` names the file in errors)."""
        self.student.load_state_dict(state["student"])
        try:
            self.method.load_state_dict(state["method"])
        except RuntimeError as err:
            reason = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise CheckpointError(f"{source} holds a method state this version cannot "
                                  f"restore ({reason}); it was probably written by an older "
                                  "subdistill: start the run in a new run directory") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        # checkpoints fall between epochs: the schedule resumes at the next epoch's first step
        # (the batches per epoch may differ when a torchrun job resumes on more processes),
        # at the learning rate of this run's schedule (the saved one unless the run is
        # extended to more epochs, which reshapes the schedule)
        self.schedule.last_epoch = len(state["history"]) * self.schedule_steps
        for group, base, factor in zip(self.optimizer.param_groups, self.schedule.base_lrs,
                                       self.schedule.lr_lambdas):  # type: ignore[attr-defined]
            group["lr"] = base * factor(self.schedule.last_epoch)
        set_rng_state(state["rng"])
        self.loader_rng.set_state(state["loader_rng"])
        self.history, self.best = state["history"], state["best"]
