import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from subdistill.cli import main
from subdistill.training.checkpoint import CheckpointError, load_checkpoint

EPOCHS = 12


@pytest.fixture
def config_file(tmp_path):
    config = {
        "teacher": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [8, 16, 16]}},
        "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
        "data": {"dataset": "digits", "subtask": "confusable"},
        "method": {"name": "subdistill", "lambda": 10.0},
        "pairs": {"layer2": "layer2", "layer3": "layer3"},
        "train": {"epochs": EPOCHS, "batch_size": 16, "augment": "crop", "schedule": "cosine",
                  "progress": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _metrics(run):
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _command(config_file, run_dir, *extra):
    """The CLI in a fresh process: every run starts from the same interpreter state."""
    return [sys.executable, "-m", "subdistill", "distill", str(config_file), "--set",
            f"run_dir={run_dir}", *extra]


def test_killed_run_resumes_to_identical_weights(config_file, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(config_file, straight), check=True, capture_output=True)

    process = subprocess.Popen(_command(config_file, killed), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_metrics(killed)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(_metrics(killed))
    assert 2 <= done < EPOCHS, "the run must be killed part-way"

    subprocess.run(_command(config_file, killed, "--resume"), check=True, capture_output=True)
    assert _metrics(killed) == _metrics(straight)
    for name in ("model_last.safetensors", "model_best.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(killed / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_checkpoint_is_checked(config_file, tmp_path):
    run = tmp_path / "run"
    assert main(["distill", str(config_file), "--set", f"run_dir={run}", "--set", "train.epochs=1"]) == 0
    checkpoint = run / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="other settings"):
        load_checkpoint(checkpoint, "0" * 16)
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(checkpoint, "0" * 16)
    assert main(["distill", str(config_file), "--set", f"run_dir={run}", "--set", "train.epochs=1",
                 "--resume"]) == 2


def test_finished_run_is_extended_with_more_epochs(config_file, tmp_path, capsys):
    run = tmp_path / "extended"
    base = ["distill", str(config_file), "--set", f"run_dir={run}", "--set", "train.epochs=2"]
    assert main(base) == 0
    first = _metrics(run)
    assert main([*base[:-1], "train.epochs=4", "--resume"]) == 0
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[:2] == first
    # epochs 3 and 4 follow the cosine schedule over 4 epochs (not the finished one's 0)
    lr = yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"]
    assert [r["lr"] for r in rows[2:]] == pytest.approx([lr * 0.5, lr * (0.5 - 0.5 ** 0.5 / 2)])
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 4
    assert json.loads((run / "summary.json").read_text())["epochs"] == 4
    capsys.readouterr()
    # fewer epochs, or another setting changed with them, are still refused
    assert main([*base[:-1], "train.epochs=3", "--resume"]) == 2
    assert main([*base[:-1], "train.epochs=6", "--set", "train.lr=0.5", "--resume"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_a_per_batch_schedule_resumes_exactly(config_file, tmp_path, monkeypatch):
    from subdistill.training.run_files import RunFiles

    per_batch = ["--set", "train.epochs=4", "--set", "train.lr_per_step=true", "--set",
                 "train.schedule=linear", "--set", "train.warmup_epochs=1", "--set",
                 "train.optimizer=sgd", "--set", "train.lr=0.05", "--set",
                 "train.norm_bias_lr_scale=4"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["distill", str(config_file), "--set", f"run_dir={straight}", *per_batch]) == 0
    save_epoch = RunFiles.save_epoch

    def save_then_stop(self, state, *args, **kwargs):
        save_epoch(self, state, *args, **kwargs)
        if state.epochs_done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunFiles, "save_epoch", save_then_stop)
    assert main(["distill", str(config_file), "--set", f"run_dir={stopped}", *per_batch]) == 130
    monkeypatch.undo()
    assert main(["distill", str(config_file), "--set", f"run_dir={stopped}", *per_batch,
                 "--resume"]) == 0
    rows = _metrics(straight)
    assert _metrics(stopped) == rows and len({r["lr"] for r in rows}) == 4
    a, b = (load_file(str(run / "model_last.safetensors")) for run in (straight, stopped))
    assert all(torch.equal(a[key], b[key]) for key in a)
