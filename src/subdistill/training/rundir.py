"""The run directory: resolved config, per-epoch metrics, model weights and a summary."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..atomic import write_text
from ..models.registry import save_weights


def environment() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import torch
    import torchvision

    from .. import __version__

    return {"subdistill": __version__, "python": platform.python_version(),
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": numpy.__version__, "platform": platform.platform()}


class RunDirectory:
    """Files of one run: ``config.yaml``, ``metrics.jsonl``, ``model_best.safetensors``,
    ``model_last.safetensors`` and ``summary.json``, every one written atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config and the library versions."""
        record = {**config, "environment": environment()}
        write_text(self.path / "config.yaml", yaml.safe_dump(record, sort_keys=False))

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Add one JSON line to ``metrics.jsonl`` (the file is rewritten atomically, so a kill
        never leaves a half-written line)."""
        path = self.path / "metrics.jsonl"
        previous = path.read_text() if path.is_file() else ""
        write_text(path, previous + json.dumps(row) + "\n")

    def rewrite_metrics(self, rows: list[Mapping[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` by ``rows`` (when resuming from a checkpoint)."""
        write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def save_model(self, model: nn.Module, tag: str) -> Path:
        """Save the trained model's weights (no training-only heads) as ``model_<tag>``."""
        path = self.path / f"model_{tag}.safetensors"
        save_weights(model, path)
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json``."""
        write_text(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")
