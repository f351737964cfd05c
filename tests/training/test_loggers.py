import csv
import json
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill.errors import ConfigError
from subdistill.training import TrainConfig, distill
from subdistill.training.loggers import LOGGERS, ExperimentLogger, register_logger


def _data():
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(32, 3, 8, 8, generator=generator), torch.arange(32) % 3)


def _run(run_dir, epochs, loggers, resume=False):
    torch.manual_seed(0)
    data = _data()
    return distill(None, TinyCNN((4, 4)), data, data, method="student-only", epochs=epochs,
                   batch_size=8, progress=False, run_dir=run_dir, loggers=loggers, resume=resume)


def _jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_csv_rows_are_the_metrics_and_a_resume_repeats_no_epoch(tmp_path):
    _run(tmp_path, 2, ["csv"])
    _run(tmp_path, 3, ["csv", "tensorboard"], resume=True)  # extended; trackers may change
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = _jsonl(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(expected[0])  # the header: the rows' keys
    for row, want in zip(rows, expected):
        assert {k: float(v) for k, v in row.items()} == pytest.approx(want)


def test_a_logger_added_on_resume_gets_the_earlier_epochs(tmp_path):
    _run(tmp_path, 2, [])
    _run(tmp_path, 3, ["csv"], resume=True)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3]


def test_tensorboard_event_file_holds_the_validation_accuracies(tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator").EventAccumulator
    _run(tmp_path, 3, ["tensorboard"])
    events = accumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("val_accuracy")
    assert [s.step for s in scalars] == [1, 2, 3]
    assert [s.value for s in scalars] == pytest.approx([r["val_accuracy"] for r in _jsonl(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert events.Scalars("summary/best_val_accuracy")[0].value == pytest.approx(
        summary["best_val_accuracy"])


def test_unknown_or_repeated_logger_names_are_config_errors():
    with pytest.raises(ConfigError, match=r"train.loggers: unknown logger 'tensorbord'\. Did you "
                       r"mean 'tensorboard'\?.*csv, mlflow, tensorboard, wandb"):
        TrainConfig(loggers=["tensorbord"])
    with pytest.raises(ConfigError, match="names 'csv' twice"):
        TrainConfig(loggers=["csv", "csv"])
    with pytest.raises(ConfigError, match="must be a list of names"):
        TrainConfig(loggers="csv")  # type: ignore[arg-type]


@pytest.mark.parametrize("name, module", [("mlflow", "mlflow"), ("wandb", "wandb"),
                                          ("tensorboard", "torch.utils.tensorboard")])
def test_a_missing_tracker_is_a_one_line_error_naming_the_extra_before_any_file(
        tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # importing it fails
    with pytest.raises(ConfigError) as err:
        _run(tmp_path / "run", 1, [name])
    assert str(err.value) == (f"train.loggers: the {name} logger needs {name}, which is not "
                              f"installed: pip install 'subdistill[{name}]'")
    assert not (tmp_path / "run").exists()


def test_loggers_need_a_run_directory():
    with pytest.raises(ConfigError, match="train.loggers needs a run directory"):
        _run(None, 1, ["csv"])


def test_a_registered_logger_is_called_and_finished_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(LOGGERS, "_entries", dict(LOGGERS._entries))  # restored on teardown
    calls = []

    @register_logger("test-recorder")
    class Recorder(ExperimentLogger):
        def start(self, settings, history):
            calls.append(("start", settings["method"], len(history)))

        def log_epoch(self, row):
            calls.append(("epoch", row["epoch"]))
            if row["epoch"] == 2 and self.run_dir.name == "failing":
                raise KeyboardInterrupt

        def finish(self, summary):
            calls.append(("finish", None if summary is None else summary["epochs"]))

    _run(tmp_path / "run", 2, ["test-recorder"])
    assert calls == [("start", "student-only", 0), ("epoch", 1), ("epoch", 2), ("finish", 2)]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "failing", 3, ["test-recorder"])
    assert calls == [("start", "student-only", 0), ("epoch", 1), ("epoch", 2),
                     ("finish", None)]
