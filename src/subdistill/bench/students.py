"""The trained students a grid explains, kept beside its ledger: a grid resumed on another
machine (without the run directories) explains the students its ledger recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_path, write_text

WEIGHTS = "model_best.safetensors"
STAMP = "cell.json"


def kept_students_dir(ledger: str | Path) -> Path:
    """Where the students of the grid whose ledger is ``ledger`` are kept: a folder named
    after the ledger (``ledger-cifar10.csv`` → ``ledger-cifar10-students``)."""
    path = Path(ledger)
    return path.with_name(f"{path.stem}-students")


def stamped_fingerprint(run_dir: Path) -> str | None:
    """The settings fingerprint a run directory (or a kept student) was trained with; None
    when it holds no weights or no stamp."""
    stamp = run_dir / STAMP
    if not (run_dir / WEIGHTS).is_file() or not stamp.is_file():
        return None
    return json.loads(stamp.read_text()).get("config_hash")


def keep_student(run_dir: Path, kept: Path, fingerprint: str) -> None:
    """Copy a finished run's best weights and its fingerprint to ``kept`` (atomically: the
    stamp is written last, so a half-copied student is never taken for a kept one)."""
    if stamped_fingerprint(kept) == fingerprint:
        return
    (kept / STAMP).unlink(missing_ok=True)
    with atomic_path(kept / WEIGHTS) as tmp:
        shutil.copyfile(run_dir / WEIGHTS, tmp)
    write_text(kept / STAMP, json.dumps({"config_hash": fingerprint}) + "\n")
