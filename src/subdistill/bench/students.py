"""The stamp of a grid's run directory (the settings fingerprint it was trained with) and the
trained students a grid explains, kept beside its ledger: a grid resumed on another machine
(without the run directories) explains the students its ledger recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_path, remove_stale_temporaries, write_text
from ..training.run_files import BEST_WEIGHTS, SUMMARY

STAMP = "cell.json"


def read_stamp(folder: Path) -> str | None:
    """The settings fingerprint stamped in ``folder`` (None without a stamp)."""
    stamp = folder / STAMP
    return json.loads(stamp.read_text()).get("config_hash") if stamp.is_file() else None


def write_stamp(folder: Path, fingerprint: str) -> None:
    """Stamp ``folder`` with the settings fingerprint of what is (or will be) trained there."""
    write_text(folder / STAMP, json.dumps({"config_hash": fingerprint}) + "\n")


def kept_students_dir(ledger: str | Path) -> Path:
    """Where the students of the grid whose ledger is ``ledger`` are kept: a folder named
    after the ledger (``ledger-cifar10.csv`` → ``ledger-cifar10-students``)."""
    path = Path(ledger)
    return path.with_name(f"{path.stem}-students")


def kept_fingerprint(kept: Path) -> str | None:
    """The fingerprint of the student kept in ``kept``; None when none is kept there."""
    return read_stamp(kept) if (kept / BEST_WEIGHTS).is_file() else None


def finished_fingerprint(run_dir: Path) -> str | None:
    """The fingerprint of the finished run in ``run_dir``; None when it holds none (an
    interrupted run's best weights are not a finished student)."""
    return kept_fingerprint(run_dir) if (run_dir / SUMMARY).is_file() else None


def keep_student(run_dir: Path, kept: Path, fingerprint: str) -> None:
    """Copy a finished run's best weights and its fingerprint to ``kept`` (the stamp is
    written last, so a half-copied student is never taken for a kept one)."""
    if kept_fingerprint(kept) == fingerprint:
        return
    if kept.is_dir():
        remove_stale_temporaries(kept)
    (kept / STAMP).unlink(missing_ok=True)
    with atomic_path(kept / BEST_WEIGHTS) as tmp:
        shutil.copyfile(run_dir / BEST_WEIGHTS, tmp)
    write_stamp(kept, fingerprint)
