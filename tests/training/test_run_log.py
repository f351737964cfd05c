import logging
import re

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill.training import distill
from subdistill.training.run_log import RunLog

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO: "


def _run(run_dir, epochs, resume=False):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 8, 8), torch.arange(32) % 3)
    return distill(None, TinyCNN((4, 4)), data, data, test=data, method="student-only",
                   epochs=epochs, batch_size=8, progress=True, run_dir=run_dir, resume=resume)


@pytest.mark.parametrize("terminal", [False, True])
def test_train_log_has_a_timestamped_line_per_epoch_and_the_result(tmp_path, monkeypatch, caplog,
                                                                    terminal):
    # on a terminal the progress bar shows the epochs: their lines go to the file only
    monkeypatch.setattr("subdistill.training.trainer.show_bars", lambda progress: terminal)
    with caplog.at_level(logging.INFO, logger="subdistill"):
        result = _run(tmp_path, 2)
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert re.fullmatch(STAMP + "student-only: run started", lines[0])
    for epoch, line in zip((1, 2), lines[1:3]):
        assert re.fullmatch(STAMP + rf"student-only epoch {epoch}/2: loss .*, val accuracy .* s",
                            line)
    assert lines[3].endswith(f"student-only best epoch {result.best_epoch}: val accuracy "
                             f"{result.best_val_accuracy:.4f}, test accuracy "
                             f"{result.test_accuracy:.4f}")
    shown = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
    assert len(shown) == (0 if terminal else 2)


def test_a_resumed_run_appends(tmp_path):
    _run(tmp_path, 2)
    first = (tmp_path / "train.log").read_text()
    _run(tmp_path, 3, resume=True)  # extended by one epoch
    text = (tmp_path / "train.log").read_text()
    assert text.startswith(first) and len(first.splitlines()) == 4
    added = [line.split("INFO: ", 1)[1] for line in text[len(first):].splitlines()]
    assert added[0] == "student-only: resumed after epoch 2" and len(added) == 3
    assert added[1].startswith("student-only epoch 3/3: ")
    assert added[2].startswith("student-only best epoch ")


def test_the_file_gets_info_the_console_shows_what_it_showed_and_the_handler_goes(tmp_path,
                                                                                  caplog):
    caplog.set_level(logging.WARNING, logger="subdistill")  # as in a session without logging
    package, logger = logging.getLogger("subdistill"), logging.getLogger("subdistill.x")
    handlers = list(package.handlers)
    with pytest.raises(RuntimeError), RunLog(tmp_path / "train.log") as run_log:
        logger.info("for the file")
        logger.warning("for both")
        run_log.note("noted")
        raise RuntimeError
    logger.warning("after")
    assert [r.getMessage() for r in caplog.records] == ["for both", "after"]
    text = (tmp_path / "train.log").read_text()
    assert "INFO: for the file" in text and "WARNING: for both" in text and "noted" in text
    assert "after" not in text
    assert package.handlers == handlers and package.level == logging.WARNING and package.propagate
