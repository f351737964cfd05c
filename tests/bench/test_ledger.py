"""The committed ledger: rows found by cell and fingerprint, and shared by several processes."""

import csv

from subdistill.bench.ledger import Ledger


def _row(subtask: str, fingerprint: str = "f1") -> dict:
    return {"stage": "final", "subtask": subtask, "method": "kd", "rho": 0.8, "seed": 0,
            "lambda": "", "test_accuracy": 0.5, "fingerprint": fingerprint}


def test_two_ledgers_on_one_file_keep_each_others_rows(tmp_path):
    path = tmp_path / "ledger.csv"
    first, second = Ledger(path), Ledger(path)  # two processes of one split grid
    first.record(_row("vehicles"))
    second.record(_row("pets"))
    with open(path, newline="") as handle:
        subtasks = sorted(row["subtask"] for row in csv.DictReader(handle))
    assert subtasks == ["pets", "vehicles"]
    assert second.find(_row("vehicles"), "f1") is not None  # read back on writing


def test_a_cell_rerun_under_other_settings_replaces_its_row(tmp_path):
    ledger = Ledger(tmp_path / "ledger.csv")
    ledger.record(_row("vehicles", "old"))
    ledger.record(_row("vehicles", "new"))
    reread = Ledger(tmp_path / "ledger.csv")
    assert len(reread.rows) == 1
    assert reread.find(_row("vehicles"), "old") is None
    assert reread.find(_row("vehicles"), "new") is not None
