import csv
import io
import json

import pytest

from subdistill.cli import main
from subdistill.compare import COLUMNS, compare_runs
from subdistill.errors import ConfigError


@pytest.fixture(scope="module")
def two_runs(tiny_run):
    """``tiny_run`` and the same run with another seed and learning rate."""
    other = tiny_run.parent / "other"
    assert main(["distill", str(tiny_run.parent / "config.yaml"), "--set", f"run_dir={other}",
                 "--set", "train.seed=1", "--set", "train.lr=0.01"]) == 0
    return tiny_run, other


def test_rows_hold_the_scores_and_only_the_settings_that_differ(two_runs):
    rows = compare_runs(two_runs)
    assert list(rows[0]) == [*COLUMNS, "train.lr"]  # the seed has a column of its own
    summaries = [json.loads((run / "summary.json").read_text()) for run in two_runs]
    for row, run, summary in zip(rows, two_runs, summaries):
        assert row["run"] == str(run) and row["method"] == "kd"
        assert (row["student"], row["subtask"], row["epochs"]) == ("cifar_resnet", "confusable", 1)
        assert row["val accuracy"] == summary["best_val_accuracy"]
        assert row["test accuracy"] == summary["test_accuracy"]
        assert row["teacher accuracy"] == summary["teacher_test_accuracy"]
        assert row["wall time (s)"] == pytest.approx(summary["seconds"]
                                                     + summary["prepare_seconds"])
    assert [r["seed"] for r in rows] == [0, 1] and [r["train.lr"] for r in rows] == ["0.001", "0.01"]


def test_cli_prints_markdown_or_csv(two_runs, capsys):
    assert main(["compare", *map(str, two_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | method | student | subtask | rho | seed |")
    assert lines[0].endswith("| train.lr |") and len(lines) == 4
    assert lines[3].startswith(f"| {two_runs[1]} | kd | cifar_resnet | confusable |")
    assert main(["compare", "--csv", *map(str, two_runs)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["train.lr"] for r in rows] == ["0.001", "0.01"]


def test_a_missing_or_unfinished_run_is_named(two_runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("method: {name: kd}\n")
    with pytest.raises(ConfigError, match=f"{unfinished} is not a finished run: it has no "
                                          "summary.json"):
        compare_runs([two_runs[0], unfinished])
    assert main(["compare", str(two_runs[0]), str(tmp_path / "gone")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'gone'} is not a run directory" in err
