"""A grid's committed ledger: one CSV row per finished run with its settings fingerprint, read
by ``subdistill bench`` to skip finished cells on any machine (no run directory needed),
extended as cells finish, and enough on its own to rebuild the report (``--report-only``)."""

from __future__ import annotations

import csv
import fcntl
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_csv
from ..errors import ConfigError
from .convergence import accuracy_curve, plateau_gain, plateaued, time_to_share

COLUMNS = ["stage", "subtask", "method", "rho", "seed", "lambda", "best_epoch",
           "best_val_accuracy", "test_accuracy", "teacher_test_accuracy", "test_per_class_accuracy",
           "test_confusion", "student_parameters",
           "epochs", "seconds", "prepare_seconds", "plateau_gain", "plateaued", "epochs_to_95",
           "seconds_to_95", "curve", "test_curve", "layer_weights", "fingerprint", "run_dir"]
"""The columns of ``results.csv`` and of a ledger (``curve``: JSON [epoch, training seconds,
validation accuracy] per validation; ``test_curve``: the same with test accuracy, for runs
with ``train.test_curve``; ``test_per_class_accuracy``: JSON class -> accuracy;
``test_confusion``: JSON rows of true classes; ``seconds``: training epochs;
``prepare_seconds``: fit, cache and calibration before them)."""
JSON_COLUMNS = ("layer_weights", "test_per_class_accuracy", "test_confusion")
"""The columns written as JSON (mappings and matrices)."""

Key = tuple[str, str, str, str, str, str]


def row_key(row: Mapping[str, Any]) -> Key:
    """(stage, subtask, method, rho, seed, λ) of a row, as text (parsed or CSV rows alike)."""
    lam = row.get("lambda")
    return (str(row["stage"]), str(row["subtask"]), str(row["method"]),
            f"{float(row['rho']):g}", str(int(row["seed"])),
            "" if lam in (None, "") else f"{float(lam):g}")


def convergence_columns(history: Iterable[Mapping[str, Any]], epochs: int) -> dict[str, Any]:
    """The convergence columns of a run from its metrics rows."""
    curve = accuracy_curve(history)
    gain = plateau_gain(curve, epochs)
    reached = time_to_share(curve)
    return {"plateau_gain": "" if gain is None else gain,
            "plateaued": {None: "", True: "yes", False: "no"}[plateaued(gain)],
            "epochs_to_95": "" if reached is None else reached[0],
            "seconds_to_95": "" if reached is None else reached[1],
            "curve": json.dumps([[e, round(s, 2), a] for e, s, a in curve]),
            "test_curve": json.dumps([[e, round(s, 2), a]
                                      for e, s, a in accuracy_curve(history, "test_accuracy")])}


class Ledger:
    """Rows of finished runs in a CSV file, one per cell, found by cell and fingerprint."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[Key, dict[str, Any]] = self._read()

    def _read(self) -> dict[Key, dict[str, Any]]:
        """The rows on disk (none when the file does not exist yet)."""
        if not self.path.is_file():
            if self.path.exists():
                raise ConfigError(f"the ledger {self.path} is not a file")
            return {}
        with open(self.path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"stage", "subtask", "method", "rho", "seed", "fingerprint"} - set(
                reader.fieldnames or [])
            if missing:
                raise ConfigError(f"{self.path} is not a bench ledger (no column "
                                  f"{', '.join(sorted(missing))})")
            return {row_key(row): row for row in reader}

    def find(self, row: Mapping[str, Any], fingerprint: str) -> dict[str, Any] | None:
        """The recorded row of ``row``'s cell if it was run with these settings."""
        found = self.rows.get(row_key(row))
        return found if found is not None and found["fingerprint"] == fingerprint else None

    def record(self, row: Mapping[str, Any]) -> None:
        """Add (or replace) the cell's row and write the file (atomically, sorted). The file is
        re-read under an exclusive lock first, so several processes sharing one ledger (a grid
        split by subtask or ρ) keep each other's rows."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.rows = {**self._read(), row_key(row): dict(row)}
                write_csv(self.path, [self.rows[k] for k in sorted(self.rows)], COLUMNS)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
