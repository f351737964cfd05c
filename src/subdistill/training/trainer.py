"""``distill()``: the training loop every method shares, composed of its parts.

:mod:`.setup` checks the models and prepares the method, :class:`.state.TrainingState` holds
what the run has learnt, :class:`.run_files.RunFiles` writes and resumes the run directory,
:class:`.epoch.EpochRunner` trains one epoch after another and :mod:`.scoring` gives the
final figures.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..console import show_bars
from ..data.augment import Augment, build_augment
from ..data.subtask import Subtask
from ..distributed import is_distributed, is_main, local_device, main_first
from ..errors import ConfigError
from ..fingerprint import data_fingerprint, model_fingerprint, structure_fingerprint
from ..methods import DistillMethod, method_class
from ..methods.layerwise import LayerwiseMethod
from ..models.restricted import restrict_teacher
from ..modes import frozen
from ..precision import to_layout, usable_channels_last, warn_if_emulated
from ..subspace.fit import SubspaceStatistics
from ..taps import LayerTaps
from .calibration import calibrate, calibration_batches, collapse_message
from .checkpoint import config_hash
from .config import TrainConfig, merge_config, resume_settings
from .epoch import EpochRunner, StudentStep, epoch_length, teacher_outputs, train_loader
from .loggers import Trackers, check_run_loggers, experiment_loggers
from .run_files import RunFiles
from .run_log import RunLog
from .scoring import DistillResult, describe_inputs, score, summary
from .setup import build_checked_method, init_from_data, num_classes, prepare_method
from .state import TrainingState
from .teacher_cache import TeacherCache

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def attached(student: nn.Module, teacher: nn.Module | None, algorithm: DistillMethod,
             cfg: TrainConfig, device: torch.device) -> Iterator[tuple[StudentStep, LayerTaps | None]]:
    """The student step with its layer taps, and the frozen teacher's taps, for the duration
    of training; hooks removed and the teacher's state restored on exit."""
    pairs = algorithm.pairs
    with ExitStack() as stack:
        student_taps = stack.enter_context(LayerTaps(student, [p.student for p in pairs]))
        teacher_taps = None
        if teacher is not None:
            stack.enter_context(frozen(teacher))
            teacher_taps = stack.enter_context(LayerTaps(teacher, [p.teacher for p in pairs]))
        yield StudentStep(student, algorithm, student_taps, device, cfg.precision,
                          cfg.epochs), teacher_taps


class RunCache:
    """A run's teacher-output cache (``train.teacher_cache``), built at most once. When it has
    to be computed, the forward over the unaugmented training images can feed a subspace fit
    too (:meth:`feed`, offered to the method as its ``teacher_pass``): one teacher pass for
    both."""

    def __init__(self, teacher: nn.Module | None, train: Dataset, algorithm: DistillMethod,
                 augment: Augment | None, cfg: TrainConfig, device: torch.device) -> None:
        self.teacher, self.train, self.augment, self.cfg, self.device = (
            teacher, train, augment, cfg, device)
        self.layers = [p.teacher for p in algorithm.pairs]
        self.enabled = bool(cfg.teacher_cache) and teacher is not None
        self.cache: TeacherCache | None = None

    def feed(self, stats: SubspaceStatistics) -> bool:
        """Build the cache feeding ``stats``; False (nothing fed) when there is no cache, it is
        on disk already, or in a process group (each process fits its own share)."""
        if not self.enabled or self.cache is not None or is_distributed():
            return False
        self.cache = self._build(stats)
        return self.cache.fed_statistics

    def get(self) -> TeacherCache | None:
        """The cache (built or opened now unless :meth:`feed` did), or None without one."""
        if self.enabled and self.cache is None:
            with main_first():  # rank 0 computes the cache, the others then open it
                self.cache = self._build(None)
        return self.cache

    def _build(self, stats: SubspaceStatistics | None) -> TeacherCache:
        cfg = self.cfg
        assert self.teacher is not None
        return TeacherCache.build(
            cfg.teacher_cache, self.teacher, self.train, self.layers, copies=cfg.cache_copies,
            augment=self.augment, augment_name=cfg.augment, seed=cfg.seed,
            precision=cfg.precision, channels_last=cfg.channels_last,
            batch_size=cfg.eval_batch_size, device=self.device,
            progress=cfg.progress and is_main(), statistics=stats)


def epoch_line(method: str, row: Mapping[str, Any], epochs: int) -> str:
    """One readable log line for an epoch's metrics row."""
    val = row.get("val_accuracy")
    return (f"{method} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, train accuracy "
            f"{row['train_accuracy']:.4f}" + ("" if val is None else f", val accuracy {val:.4f}")
            + f", lr {row['lr']:.3g}, {row['seconds']:.1f} s")


def result_line(result: DistillResult) -> str:
    """One readable log line for a finished run's scores."""
    scores = [("val accuracy", result.best_val_accuracy), ("test accuracy", result.test_accuracy),
              ("teacher on the subtask", result.teacher_test_accuracy)]
    return (f"{result.method.name} best epoch {result.best_epoch}: "
            + ", ".join(f"{name} {value:.4f}" for name, value in scores if value is not None))


def _train(runner: EpochRunner, state: TrainingState, files: RunFiles,
           settings: Mapping[str, str], method: str, classes: int, run_log: RunLog,
           trackers: Trackers) -> None:
    """Epochs from where ``state`` stands to the last: record, save, log (``train.log`` and
    the experiment loggers), warn once on collapse."""
    cfg, warned = runner.cfg, False
    bars = show_bars(cfg.progress and is_main())
    bar = tqdm(range(state.epochs_done, cfg.epochs), desc=method, disable=not bars,
               initial=state.epochs_done, total=cfg.epochs)
    for _ in bar:
        row = runner(state, bars)
        if is_main():  # on a terminal the bar shows the epoch: its line goes to train.log only
            line = epoch_line(method, row, cfg.epochs)
            if bars:
                run_log.note(line)
            else:
                log.info("%s", line)
        improved = state.record(row)
        collapse = None if warned else collapse_message(state.history, classes, cfg.epochs)
        if collapse is not None and is_main():
            log.warning("%s: %s", method, collapse)
            warned = True
        files.save_epoch(state, settings, improved)
        trackers.log_epoch(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}",
                        val=f"{row.get('val_accuracy', float('nan')):.3f}",
                        best=f"{state.best['val_accuracy']:.3f}")


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
    overwrite: bool = False,
    **overrides: Any,
) -> DistillResult:
    """Train ``student`` on ``train`` with ``method``; keep the best-validation weights.

    ``teacher`` must output the subtask's logits, or pass ``subtask`` to restrict it here.
    ``pairs`` maps teacher layer paths to student layer paths. ``options`` are the method's
    hyper-parameters (``subdistill list methods`` describes them); training settings come from
    ``config`` and keyword ``overrides`` (see :class:`TrainConfig`). Labels are used only for
    model selection and evaluation unless the method itself uses them. With ``run_dir`` a
    checkpoint is written after every epoch; ``resume=True`` continues from it (refused when a
    setting changed, see :func:`run_settings`), ``overwrite=True`` replaces an earlier run
    there; without either, a run directory holding a run is refused.

    Called by every process inside :func:`subdistill.distributed.process_group` (``torchrun``),
    it trains with DistributedDataParallel: ``batch_size`` is per process, each process fits
    and scores its share of the data, and only rank 0 writes ``run_dir``.
    """
    cfg = merge_config(config, overrides)
    seed_everything(cfg.seed)
    if method_class(method).needs_teacher and teacher is None:
        raise ConfigError(f"method {method} needs a teacher")
    if teacher is not None and subtask is not None:
        teacher = restrict_teacher(teacher, subtask)
    settings = run_settings(method, options, pairs, cfg, teacher, student, (train, val, test))
    files = RunFiles(run_dir, writer=is_main())  # in a process group only rank 0 writes
    device = local_device(cfg.device)
    warn_if_emulated(device, cfg.precision)
    cfg = replace(cfg, channels_last=usable_channels_last(student, device, cfg.channels_last))
    algorithm = build_checked_method(teacher, student, train, method=method, pairs=pairs,
                                     options=options, device=device)  # before any file
    check_run_loggers(cfg.loggers, run_dir)
    flat = resume_settings(settings)
    written = {**(record if record is not None else settings),
               "fingerprints": settings["fingerprints"]}
    with files.claim(resume, overwrite) as resuming, files.logged() as run_log, \
            ExitStack() as stack:
        checkpoint = files.read_checkpoint(flat) if resuming else None  # same settings?
        run_log.note(f"{method}: " + ("run started" if checkpoint is None else
                                      f"resumed after epoch {len(checkpoint['history'])}"))
        if checkpoint is None or checkpoint["config_hash"] != config_hash(flat):  # or extended
            files.write_config(written)
        started = time.perf_counter()
        teacher = teacher if algorithm.needs_teacher else None
        augment = build_augment(cfg.augment, int(train[0][0].shape[-1]))
        run_cache = RunCache(teacher, train, algorithm, augment, cfg, device)
        algorithm = prepare_method(algorithm, teacher, train, cfg, run_dir,
                                   settings["fingerprints"]["data"]["train"], run_cache.feed)
        initialised = init_from_data(student, train, device, cfg.seed) if checkpoint is None else 0
        if initialised:
            run_log.note(f"{method}: student initialised from {initialised} training images")
        for model in (student, teacher):
            if model is not None:
                to_layout(model, cfg.channels_last)
        loader_rng = torch.Generator().manual_seed(cfg.seed)
        loader = train_loader(train, cfg, loader_rng)
        cache = run_cache.get()
        state = TrainingState.create(student, algorithm, cfg, loader_rng,
                                     epoch_length(loader, cache, cfg.batch_size))
        if checkpoint is not None:
            files.restore(state, checkpoint)
        trackers = stack.enter_context(experiment_loggers(
            cfg.loggers, files.path if files.writer else None, written, state.history))
        with attached(student, teacher, algorithm, cfg, device) as (step, teacher_taps):
            if isinstance(algorithm, LayerwiseMethod) and teacher is not None and not resuming:
                calibrate(algorithm, student, lambda x, y: step.step_outputs(
                    x, y, *teacher_outputs(teacher, teacher_taps, x, device, cfg.precision)),
                    calibration_batches(train, cfg.batch_size, cfg.channels_last, device))
            model = step if not is_distributed() else DistributedDataParallel(  # averages grads
                step, device_ids=[device.index] if device.type == "cuda" else None)
            runner = EpochRunner(model, step, teacher, teacher_taps, loader, cache, augment, val,
                                 cfg, device, test)
            prepare_seconds = time.perf_counter() - started
            _train(runner, state, files, flat, method, num_classes(train), run_log, trackers)
        state.restore_best()
        result = score(state, teacher, val, test, cfg, device, run_dir)
        result.prepare_seconds = prepare_seconds
        final = summary(result, cfg, describe_inputs(train))
        files.write_summary(final)
        trackers.finish(final)
        run_log.note(result_line(result))
    return result


def run_settings(method: str, options: Mapping[str, Any] | None, pairs: Mapping[str, str] | None,
                 cfg: TrainConfig, teacher: nn.Module | None, student: nn.Module,
                 data: tuple[Dataset, Dataset, Dataset | None]) -> dict[str, Any]:
    """What a run is: the method, its options and pairs, the training settings, the teacher's
    weights (a fingerprint, with the subtask's classes), the student's architecture and the
    training, validation and test images (fingerprints). A resumed run must match it."""
    uses_teacher = teacher is not None and method_class(method).needs_teacher
    fingerprints = {
        "teacher": model_fingerprint(teacher) if uses_teacher else None,  # type: ignore[arg-type]
        "student": structure_fingerprint(student),
        "data": {split: data_fingerprint(d) if d is not None else None
                 for split, d in zip(("train", "val", "test"), data)}}
    return {"method": method, "options": dict(options or {}), "pairs": dict(pairs or {}),
            "train": asdict(cfg), "fingerprints": fingerprints}
