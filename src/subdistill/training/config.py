"""The training settings of a run (:class:`TrainConfig`) and the checks they pass."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from ..data.augment import AUGMENTS
from ..errors import ConfigError, SubdistillError, closest
from .checkpoint import config_hash
from .loggers import check_loggers
from .optim import OPTIMIZERS, SCHEDULES

PRECISIONS = ("fp32", "bf16")
# training settings that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = ("progress", "num_workers", "device", "eval_batch_size", "loggers",
                     "teacher_cache")  # the cache's folder: its contents are keyed by a hash


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
    lr_per_step: bool = False  # follow the schedule batch by batch instead of epoch by epoch
    norm_bias_lr_scale: float = 1.0  # learning-rate multiplier of the normalisation shifts
    augment: str = "none"
    precision: str = "fp32"
    channels_last: bool = False
    teacher_cache: str = ""
    cache_copies: int = 1
    eval_batch_size: int = 256
    evaluations: int = 0
    test_curve: bool = False  # also score the test split on the validated epochs (recorded only)
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    loggers: list[str] = field(default_factory=list)  # csv, tensorboard, mlflow, wandb

    def __post_init__(self) -> None:
        _check_ranges(self)
        check_loggers(self.loggers)
        for key, registry in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("augment", AUGMENTS)):
            try:
                registry.get(getattr(self, key))
            except SubdistillError as err:
                raise ConfigError(f"train.{key}: {err}") from None
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got "
                              f"{self.precision!r}")
        if self.teacher_cache and self.augment != "none" and self.cache_copies == 1:
            raise ConfigError(f"train.teacher_cache with train.augment={self.augment!r} and "
                              "cache_copies=1 would train on unaugmented images only: set "
                              "cache_copies >= 2 (the original plus augmented copies) or "
                              "augment: none")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"train.warmup_epochs ({self.warmup_epochs}) must be fewer than "
                              f"train.epochs ({self.epochs})")
        check_device(self.device)


# (lowest, highest) of the numeric settings; a lowest of 0 for a positive setting is excluded
POSITIVE = {"epochs": 10**5, "batch_size": 2**20, "lr": 1e3, "step_size": 10**5, "gamma": 1e3,
            "eval_batch_size": 2**20, "norm_bias_lr_scale": 1e4}
NON_NEGATIVE = {"weight_decay": 1e3, "momentum": 1.0, "num_workers": 256, "warmup_epochs": 10**5,
                "evaluations": 10**5}


def _check_ranges(cfg: TrainConfig) -> None:
    """Finite sizes and rates in their ranges, a 32-bit seed."""
    for name, high in POSITIVE.items():
        value = getattr(cfg, name)
        if not (math.isfinite(value) and 0 < value <= high):
            raise ConfigError(f"train.{name} must be positive and at most {high:g}, got {value}")
    for name, high in NON_NEGATIVE.items():
        value = getattr(cfg, name)
        if not (math.isfinite(value) and 0 <= value <= high):
            raise ConfigError(f"train.{name} must be in [0, {high:g}], got {value}")
    if not 1 <= cfg.cache_copies <= 100:
        raise ConfigError(f"train.cache_copies must be in [1, 100], got {cfg.cache_copies}")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"train.seed must be in [0, 2**32), got {cfg.seed}")


def merge_config(config: TrainConfig | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """``config`` (default: :class:`TrainConfig`) with keyword ``overrides``, names checked."""
    names = [f.name for f in fields(TrainConfig)]
    for key in overrides:
        if key not in names:
            raise ConfigError(f"unknown training option {key!r}.{closest(key, names)}")
    return replace(config or TrainConfig(), **overrides)


def validation_epochs(epochs: int, evaluations: int) -> set[int]:
    """The (1-based) epochs after which the student is validated: ``evaluations`` evenly
    spaced ones ending with the last epoch, or every epoch when ``evaluations`` is 0."""
    if evaluations == 0 or evaluations >= epochs:
        return set(range(1, epochs + 1))
    return {round(epochs * i / evaluations) for i in range(1, evaluations + 1)}


def resume_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings of a run (with a ``train`` mapping) that must not change when it is
    resumed, flattened to ``section.key -> JSON value``: training options that may change
    (:data:`RESUMABLE_CHANGES`) and options at their default value (an empty ``imports`` list
    too) and the locations of basis files are left out, so options added to a later version
    keep old runs resumable and a moved basis file does not block a resume."""
    defaults = asdict(TrainConfig())
    train = {k: v for k, v in settings["train"].items()
             if k not in RESUMABLE_CHANGES and (k not in defaults or defaults[k] != v)}
    kept = {k: v for k, v in settings.items() if not (k == "imports" and not v)}
    flat = flatten({**kept, "train": train})
    # where a basis file lies is not a setting (its contents are checked on every read)
    return {k: v for k, v in flat.items() if not k.endswith("bases_file")}


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``section.key -> JSON value``."""
    flat: dict[str, str] = {}
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return flat


def run_fingerprint(settings: Mapping[str, Any]) -> str:
    """Hash of :func:`resume_settings`."""
    return config_hash(resume_settings(settings))


def changed_settings(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """``key (old -> new)`` for every setting of :func:`resume_settings` that differs."""
    def shown(flat: Mapping[str, str], key: str) -> str:
        value = flat.get(key, "(not set)")
        return value if len(value) <= 40 else value[:37] + "..."

    return [f"{key} ({shown(before, key)} -> {shown(after, key)})"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def extends(recorded: Mapping[str, str], current: Mapping[str, str]) -> bool:
    """Whether settings ``current`` continue the run of ``recorded`` (both flattened by
    :func:`resume_settings`) for more epochs: ``train.epochs`` grew and nothing else changed."""
    key = "train.epochs"
    others = set(changed_settings(
        {k: v for k, v in recorded.items() if k != key},
        {k: v for k, v in current.items() if k != key}))
    before, after = (int(json.loads(flat.get(key, json.dumps(TrainConfig.epochs))))
                     for flat in (recorded, current))
    return not others and after > before


def check_device(name: str) -> torch.device:
    """The torch device called ``name``, if this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, "
                          "mps)") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device {name!r}: only cpu, cuda and mps are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"train.device {name!r}: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device is {name!r} but MPS is not available here; use cpu")
    return device
