"""Experiment loggers (``train.loggers``): a run's settings, epochs and summary sent to a CSV
file, TensorBoard, MLflow or Weights & Biases, found by name.

A logger is a class ``Logger(run_dir)`` with :meth:`ExperimentLogger.start`,
:meth:`~ExperimentLogger.log_epoch` and :meth:`~ExperimentLogger.finish`; register your own
with ``@register_logger("name")``. Trackers are imported when a run uses them; a missing one
is a one-line error naming the pip extra that installs it.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ..atomic import write_csv
from ..errors import ConfigError, SubdistillError
from ..extras import require
from ..registry import Registry


class ExperimentLogger:
    """One tracker of the run in ``run_dir``; every method does nothing by default."""

    requires: tuple[str, str] | None = None  # (module, pip extra) it imports, checked up front

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def start(self, settings: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        """Before the first epoch: the run's ``settings`` (its resolved config) and the
        ``history`` of the epochs a resumed run has done already (empty for a new run)."""

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """After each epoch: its ``metrics.jsonl`` row."""

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        """At the end: the contents of ``summary.json``, or None when the run failed."""


LOGGERS: Registry[type[ExperimentLogger]] = Registry("logger")


def register_logger(name: str) -> Callable[[type[ExperimentLogger]], type[ExperimentLogger]]:
    """Register an :class:`ExperimentLogger` subclass as ``name`` (for ``train.loggers``)."""
    return LOGGERS.register(name)


def check_loggers(names: Sequence[str]) -> None:
    """``names`` is a list of registered loggers, each named once."""
    if isinstance(names, str):
        raise ConfigError(f"train.loggers must be a list of names, e.g. [csv], got {names!r}")
    for name in names:
        try:
            LOGGERS.get(name)
        except SubdistillError as err:
            raise ConfigError(f"train.loggers: {err}") from None
        if list(names).count(name) > 1:
            raise ConfigError(f"train.loggers names {name!r} twice")


def check_run_loggers(names: Sequence[str], run_dir: str | Path | None) -> None:
    """Before any file of a run is written: loggers need a run directory and their trackers
    installed."""
    if names and run_dir is None:
        raise ConfigError("train.loggers needs a run directory (run_dir)")
    for name in names:
        requires = LOGGERS.get(name).requires
        if requires is not None:
            tracker(*requires)


def tracker(module: str, extra: str) -> ModuleType:
    """Import ``module``; a one-line error naming ``pip install 'subdistill[extra]'`` when it
    is not installed."""
    return require(module, extra, f"train.loggers: the {extra} logger", package=extra)


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``row`` other than ``epoch`` (booleans and None left out)."""
    return {key: float(value) for key, value in row.items() if key != "epoch"
            and isinstance(value, numbers.Real) and not isinstance(value, bool)}


class Trackers:
    """The started loggers of a run, called together."""

    def __init__(self) -> None:
        self.loggers: list[ExperimentLogger] = []
        self.finished = False

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """Send an epoch's row to every logger."""
        for logger in self.loggers:
            logger.log_epoch(row)

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        """Finish every logger with ``summary`` (None: the run failed)."""
        self.finished = True
        for logger in self.loggers:
            logger.finish(summary)


@contextmanager
def experiment_loggers(names: Sequence[str], run_dir: Path | None, settings: Mapping[str, Any],
                       history: Sequence[Mapping[str, Any]]) -> Iterator[Trackers]:
    """The loggers ``names`` of the run in ``run_dir``, started (none without a run
    directory: the other ranks of a process group); unless :meth:`Trackers.finish` was
    called, they are finished with None (failed) on exit."""
    trackers = Trackers()
    try:
        if run_dir is not None:
            for name in names:
                logger = LOGGERS.get(name)(run_dir)
                logger.start(settings, history)
                trackers.loggers.append(logger)
        yield trackers
    finally:
        if not trackers.finished:
            trackers.finish(None)


@register_logger("csv")
class CsvLogger(ExperimentLogger):
    """``RUN_DIR/metrics.csv``: one row per epoch, the columns the keys of the rows (rewritten
    atomically after each epoch from the run's history, so a resumed run repeats no epoch)."""

    def start(self, settings: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        self.rows = [dict(row) for row in history]
        if self.rows:
            self._write()

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        write_csv(self.run_dir / "metrics.csv", self.rows, columns)


@register_logger("tensorboard")
class TensorBoardLogger(ExperimentLogger):
    """Scalars under ``RUN_DIR/tensorboard/`` (step: the epoch), the settings as text."""

    requires = ("torch.utils.tensorboard", "tensorboard")

    def start(self, settings: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        board = tracker(*self.requires)
        self.writer = board.SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self.step = len(history)
        if not history:
            self.writer.add_text("settings", f"```\n{json.dumps(settings, indent=1, default=str)}"
                                 "\n```")

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self.step = int(row["epoch"])
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, self.step)
        self.writer.flush()

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        for key, value in scalars(summary or {}).items():
            self.writer.add_scalar(f"summary/{key}", value, self.step)
        self.writer.close()


def _params(settings: Mapping[str, Any]) -> dict[str, str]:
    """``settings`` flattened to ``section.key -> value`` (fingerprints left out)."""
    from .config import flatten

    return {key: value[:500] for key, value in flatten(settings).items()
            if not key.startswith("fingerprints.")}


@register_logger("mlflow")
class MlflowLogger(ExperimentLogger):
    """An MLflow run named after the run directory (nested in an active run) at the tracking
    URI (``MLFLOW_TRACKING_URI``; MLflow's default otherwise): the settings as parameters,
    every epoch's metrics and the summary's figures."""

    requires = ("mlflow", "mlflow")

    def start(self, settings: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        self.mlflow = tracker(*self.requires)
        self.mlflow.start_run(run_name=self.run_dir.name,
                              nested=self.mlflow.active_run() is not None)
        self.mlflow.log_params(_params(settings))

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self.mlflow.log_metrics(scalars(row), step=int(row["epoch"]))

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        if summary is not None:
            self.mlflow.log_metrics({f"summary/{k}": v for k, v in scalars(summary).items()})
        self.mlflow.end_run(status="FINISHED" if summary is not None else "FAILED")


@register_logger("wandb")
class WandbLogger(ExperimentLogger):
    """A Weights & Biases run named after the run directory, its files under ``RUN_DIR``
    (``WANDB_MODE=offline`` or ``disabled`` is respected): the settings as its config, every
    epoch's metrics and the summary's figures."""

    requires = ("wandb", "wandb")

    def start(self, settings: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        wandb = tracker(*self.requires)
        self.run = wandb.init(name=self.run_dir.name, dir=str(self.run_dir), config={
            key: value for key, value in settings.items() if key != "fingerprints"})

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self.run.log(scalars(row), step=int(row["epoch"]))

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        if summary is not None:
            self.run.summary.update(scalars(summary))
        self.run.finish(exit_code=0 if summary is not None else 1)
