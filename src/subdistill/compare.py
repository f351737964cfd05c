"""``subdistill compare``: several finished runs side by side, read from their ``summary.json``
and ``config.yaml``, with the settings that differ between them as extra columns."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .results import subtask_label

ACCURACIES = ("val accuracy", "test accuracy", "teacher accuracy")
COLUMNS = ("run", "method", "student", "subtask", "rho", "seed", "epochs", "best epoch",
           *ACCURACIES, "wall time (s)")
# config.yaml entries that are not settings, or shown in COLUMNS already
NOT_COMPARED = ("environment.", "provenance.", "fingerprints.", "run_dir", "method.name",
                "student.name", "model.name", "data.subtask", "data.rho", "train.seed",
                "train.epochs")


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``summary.json`` and ``config.yaml`` of a finished run (one-line errors naming
    it when it is missing or unfinished)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run directory: it does not exist")
    found = []
    for name in ("summary.json", "config.yaml"):
        if not (run / name).is_file():
            raise ConfigError(f"{run} is not a finished run: it has no {name}")
        text = (run / name).read_text()
        try:
            found.append(json.loads(text) if name.endswith(".json") else yaml.safe_load(text))
        except (ValueError, yaml.YAMLError):
            raise ConfigError(f"{run}/{name} cannot be read: is it a subdistill run?") from None
        if not isinstance(found[-1], dict):
            raise ConfigError(f"{run}/{name} is not a mapping: is it a subdistill run?")
    return found[0], found[1]


def compare_runs(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per run: :data:`COLUMNS`, then every setting of ``config.yaml`` whose value
    differs between the runs (``section.key``, the value as JSON; a string unquoted)."""
    from .training.config import flatten

    runs = [read_run(run) for run in run_dirs]
    rows = [_row(Path(run), summary, config) for run, (summary, config) in zip(run_dirs, runs)]
    flats = [{k: v for k, v in flatten(config).items() if not k.startswith(NOT_COMPARED)}
             for _, config in runs]
    keys = sorted(set().union(*flats))
    differ = [k for k in keys if len({flat.get(k) for flat in flats}) > 1]
    for row, flat in zip(rows, flats):
        row.update({key: _shown(flat.get(key)) for key in differ})
    return rows


def _row(run: Path, summary: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    data, train = config.get("data") or {}, config.get("train") or {}
    model = config.get("student") or config.get("model") or {}
    subtask = data.get("subtask")
    return dict(zip(COLUMNS, (
        str(run), summary.get("method"), model.get("name"),
        subtask_label(subtask) if subtask is not None else None, data.get("rho"),
        train.get("seed"), summary.get("epochs"), summary.get("best_epoch"),
        summary.get("best_val_accuracy"), summary.get("test_accuracy"),
        summary.get("teacher_test_accuracy"),
        summary.get("seconds", 0.0) + summary.get("prepare_seconds", 0.0))))


def _shown(value: str | None) -> str:
    """A flattened JSON value as a cell: a string without quotes, a missing key empty."""
    if value is None:
        return ""
    parsed = json.loads(value)
    return parsed if isinstance(parsed, str) else value


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in ACCURACIES:
        return f"{value:.4f}"
    return f"{value:.1f}" if column == COLUMNS[-1] else str(value)


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as a Markdown table (accuracies to 4 decimals, the wall time to 0.1 s)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, row[c]).replace("|", "\\|") for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def format_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV with a header (numbers unrounded)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
