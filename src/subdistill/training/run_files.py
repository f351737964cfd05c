"""The files of one run: resolved config, per-epoch metrics, model weights, checkpoint and
summary, every one written atomically."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..atomic import write_text
from ..errors import ConfigError
from ..models.registry import save_weights
from .checkpoint import load_checkpoint, save_checkpoint
from .state import TrainingState

CHECKPOINT = "checkpoint.pt"


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
    ``model_last.safetensors``, ``checkpoint.pt`` and ``summary.json`` of the run in
    ``path``. Without a ``path``, or when this process is not the ``writer`` (the other
    ranks of a process group), nothing is written; every process can read the checkpoint."""

    def __init__(self, path: str | Path | None, writer: bool = True):
        self.path = Path(path) if path is not None else None
        self.writer = writer and self.path is not None
        if self.writer:
            self.file("").mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        """The path of file ``name`` in the run directory (an error without one)."""
        if self.path is None:
            raise ConfigError("this needs a run directory")
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file."""
        return self.file(CHECKPOINT)

    def resumable(self, resume: bool) -> bool:
        """Whether the run continues from a checkpoint: asked to, and there is one."""
        if resume and self.path is None:
            raise ConfigError("resume needs a run directory")
        return resume and self.checkpoint.is_file()

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config and the library versions."""
        if self.writer:
            record = {**config, "environment": environment()}
            write_text(self.file("config.yaml"), yaml.safe_dump(record, sort_keys=False))

    def restore(self, state: TrainingState, fingerprint: str) -> None:
        """Load the checkpoint (written by a run with ``fingerprint``) into ``state`` and put
        ``metrics.jsonl`` back to its epochs."""
        state.load_state_dict(load_checkpoint(self.checkpoint, fingerprint), self.checkpoint)
        self._write_metrics(state.history)

    def save_epoch(self, state: TrainingState, fingerprint: str, improved: bool) -> None:
        """After an epoch: the best weights (when ``improved``), the last weights, the
        checkpoint, then the epoch's metrics line."""
        if not self.writer:
            return
        if improved:
            self.save_model(state.student, "best")
        self.save_model(state.student, "last")
        save_checkpoint(self.checkpoint, {"config_hash": fingerprint, **state.state_dict()})
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
