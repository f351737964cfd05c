"""The files of one run: resolved config, per-epoch metrics, model weights, checkpoint and
summary, every one written atomically, and the run's log (``train.log``, appended)."""

from __future__ import annotations

import json
import os
import platform
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..atomic import process_alive, remove_stale_temporaries, write_text
from ..errors import ConfigError
from ..models.registry import save_weights
from .checkpoint import config_hash, load_checkpoint, save_checkpoint
from .config import changed_settings, extends
from .provenance import provenance
from .run_log import RunLog
from .state import TrainingState

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "model_best.safetensors"
SUMMARY = "summary.json"
RUN_FILES = ("config.yaml", "metrics.jsonl", BEST_WEIGHTS, "model_last.safetensors",
             CHECKPOINT, SUMMARY, "train.log")
"""The files a run writes; a folder holding any of them holds an earlier run."""
BASES = "bases.safetensors"
LOCK = ".lock"


def environment() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import torch
    import torchvision

    from .. import __version__

    return {"subdistill": __version__, "python": platform.python_version(),
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": numpy.__version__, "platform": platform.platform()}


class RunFiles:
    """``config.yaml``, ``metrics.jsonl``, ``model_best.safetensors``,
    ``model_last.safetensors``, ``checkpoint.pt``, ``summary.json`` and ``train.log`` of the
    run in ``path``. Without a ``path``, or when this process is not the ``writer`` (the other
    ranks of a process group), nothing is written; every process can read the checkpoint."""

    def __init__(self, path: str | Path | None, writer: bool = True):
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run_dir {self.path} is an existing file, not a folder; choose "
                              "another run directory")
        self.writer = writer and self.path is not None

    def file(self, name: str) -> Path:
        """The path of file ``name`` in the run directory (an error without one)."""
        if self.path is None:
            raise ConfigError("this needs a run directory")
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file."""
        return self.file(CHECKPOINT)

    def holds_run(self) -> bool:
        """Whether the run directory holds files of an earlier run."""
        return self.path is not None and any((self.path / n).exists() for n in RUN_FILES)

    @contextmanager
    def claim(self, resume: bool = False, overwrite: bool = False) -> Iterator[bool]:
        """Hold the run directory for this run; yields whether the run resumes from a
        checkpoint (``resume`` and there is one).

        A folder that holds an earlier run is refused unless ``resume`` (continue it) or
        ``overwrite`` (delete its files, saved bases included, and start again); a folder in
        use by a live run is refused (the ``.lock`` file names it). Temporary files of killed
        writes are removed."""
        if resume and overwrite:
            raise ConfigError("resume and overwrite exclude each other: continue the run, or "
                              "replace it")
        if self.path is None:
            if resume:
                raise ConfigError("resume needs a run directory")
            yield False
            return
        if not self.writer:  # the other ranks of a process group read what rank 0 holds
            yield resume and self.checkpoint.is_file()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            remove_stale_temporaries(self.path)
            earlier = [name for name in RUN_FILES if (self.path / name).exists()]
            if earlier and not resume and not overwrite:
                raise ConfigError(f"run directory {self.path} holds an earlier run "
                                  f"({', '.join(earlier)}): pass --resume to continue it or "
                                  "--overwrite to replace it (resume=True / overwrite=True in "
                                  "Python), or choose another run directory")
            if overwrite:
                for name in (*RUN_FILES, BASES):
                    (self.path / name).unlink(missing_ok=True)
            yield resume and self.checkpoint.is_file()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The run directory's ``.lock`` file, created for the duration (a stale one, left by
        a process of this machine that is gone, is taken over)."""
        lock = self.file(LOCK)
        host = socket.gethostname()
        for attempt in (1, 2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                owner = (lock.read_text(errors="replace").split() + ["?", "?"])[:2]
                pid, owner_host = owner
                stale = owner_host == host and pid.isdigit() and not process_alive(int(pid))
                if attempt == 1 and stale:
                    lock.unlink(missing_ok=True)
                    continue
                raise ConfigError(f"run directory {self.path} is in use by process {pid} on "
                                  f"{owner_host}: wait for that run to end, or delete {lock} "
                                  "if it is gone") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()} {host}\n")
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config, the library versions and where the run comes from
        (:func:`.provenance.provenance`; neither is a setting a resume checks)."""
        if self.writer:
            record = {**config, "environment": environment(), "provenance": provenance()}
            write_text(self.file("config.yaml"), yaml.safe_dump(record, sort_keys=False))

    def logged(self) -> RunLog:
        """The run's log records appended to ``train.log`` while this context lasts."""
        return RunLog(self.file("train.log") if self.writer else None)

    def read_checkpoint(self, settings: Mapping[str, str]) -> dict[str, Any]:
        """The checkpoint, which must have been written with the same ``settings`` (see
        :func:`.config.resume_settings`; the error names the changed ones) or with fewer
        ``train.epochs`` only (the run is extended: :func:`.config.extends`)."""
        return load_checkpoint(self.checkpoint, config_hash(settings),
                               lambda recorded: changed_settings(recorded, settings),
                               lambda recorded: extends(recorded, settings))

    def restore(self, state: TrainingState, checkpoint: Mapping[str, Any]) -> None:
        """Load ``checkpoint`` into ``state`` and put ``metrics.jsonl`` back to its epochs."""
        state.load_state_dict(dict(checkpoint), self.checkpoint)
        self._write_metrics(state.history)

    def save_epoch(self, state: TrainingState, settings: Mapping[str, str],
                   improved: bool) -> None:
        """After an epoch: the best weights (when ``improved``), the last weights, the
        checkpoint, then the epoch's metrics line."""
        if not self.writer:
            return
        if improved:
            self.save_model(state.student, "best")
        self.save_model(state.student, "last")
        save_checkpoint(self.checkpoint, {"config_hash": config_hash(settings),
                                          "settings": dict(settings), **state.state_dict()})
        self._write_metrics(state.history)

    def save_model(self, model: nn.Module, tag: str) -> None:
        """Save the trained model's weights (no training-only heads) as ``model_<tag>``."""
        if self.writer:
            save_weights(model, self.file(f"model_{tag}.safetensors"))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json``."""
        if self.writer:
            write_text(self.file("summary.json"), json.dumps(summary, indent=2) + "\n")

    def _write_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``metrics.jsonl``: one JSON line per finished epoch, rewritten atomically (a kill
        never leaves a half-written line)."""
        if self.writer:
            write_text(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
