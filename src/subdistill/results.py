"""Looking up the runs of a benchmark grid in its results ledger (``results.csv``), shared by
``subdistill bench`` (which writes it) and ``subdistill explain`` (which reads it)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

SubtaskSpec = Any  # a preset name, a list of class indices / names, or {name, classes}


def path_safe(name: str) -> str:
    """``name`` as one path component that stays in its folder: every character other than
    letters, digits, ``_``, ``+`` and ``-`` becomes ``_`` (so no ``/``, ``..`` or hidden
    name)."""
    return re.sub(r"[^A-Za-z0-9_+-]", "_", name) or "_"


def subtask_label(spec: SubtaskSpec) -> str:
    """A short, path-safe name of a subtask spec (see :func:`path_safe`): a preset's or a
    named subtask's name, else its classes joined by ``-``."""
    if isinstance(spec, Mapping):
        return path_safe(str(spec.get("name", "custom")))
    return path_safe(spec if isinstance(spec, str) else "-".join(str(c) for c in spec))


def final_rows(rows: Iterable[Mapping[str, Any]], subtask: str, rho: float,
               seed: int) -> list[Mapping[str, Any]]:
    """The final runs among ``rows`` (``results.csv`` rows, parsed or not) at one (subtask,
    rho, seed)."""
    return [r for r in rows if r["stage"] == "final" and r["subtask"] == subtask
            and float(r["rho"]) == rho and int(r["seed"]) == seed]


def final_runs(rows: Iterable[Mapping[str, Any]], out_dir: str | Path, subtask: str, rho: float,
               seed: int) -> dict[str, Path]:
    """Run directory per method of the final runs among ``rows`` at one (subtask, rho, seed)
    (a ``run_dir`` relative to ``out_dir``, or absolute)."""
    return {r["method"]: Path(out_dir) / r["run_dir"]
            for r in final_rows(rows, subtask, rho, seed)}


def final_run_dirs(out_dir: str | Path, subtask: str, rho: float, seed: int) -> dict[str, Path]:
    """Run directory per method of the finished final runs of a grid at one (subtask, rho,
    seed), read from its ``results.csv``."""
    results = Path(out_dir) / "results.csv"
    if not results.is_file():
        raise ConfigError(f"{results} does not exist: run `subdistill bench` first")
    with open(results, newline="") as handle:
        runs = final_runs(csv.DictReader(handle), out_dir, subtask, rho, seed)
    if not runs:
        raise ConfigError(f"{results} has no finished final run of subtask {subtask!r} at rho "
                          f"{rho:g}, seed {seed}")
    return runs
