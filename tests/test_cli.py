import json

import pytest
import yaml

from subdistill.cli import main
from subdistill.models import create_model, save_weights


@pytest.fixture
def digits_config(tmp_path):
    """A quick digits config with a (random) saved teacher: it tests plumbing, not accuracy."""
    teacher_args = {"depth": 8, "widths": [8, 16, 16]}
    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **teacher_args), weights)
    config = {
        "teacher": {"name": "cifar_resnet", "args": teacher_args, "weights": str(weights)},
        "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
        "data": {"dataset": "digits", "subtask": "confusable"},
        "method": {"name": "subdistill", "lambda": 10.0},
        "pairs": {"layer2": "layer2", "layer3": "layer3"},
        "train": {"epochs": 2, "batch_size": 64, "progress": False},
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_distill_writes_a_run_directory(digits_config, capsys):
    assert main(["distill", str(digits_config)]) == 0
    run = digits_config.parent / "run"
    assert "test accuracy" in capsys.readouterr().out
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["method"]["lambda"] == 10.0 and "torch" in recorded["environment"]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_overrides_reach_the_run(digits_config, capsys):
    assert main(["distill", str(digits_config), "--set", "method={name: kd}",
                 "--set", "train.epochs=1"]) == 0
    summary = json.loads((digits_config.parent / "run" / "summary.json").read_text())
    assert summary["method"] == "kd" and summary["epochs"] == 1


def test_device_flag_sets_train_device_and_a_teacherless_run_prints(digits_config, capsys):
    assert main(["distill", str(digits_config), "--device", "tpu"]) == 2
    assert "'tpu' is not a device name" in capsys.readouterr().err
    assert main(["distill", str(digits_config), "--device", "cpu", "--set", "train.epochs=1",
                 "--set", "method={name: student-only}"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "teacher on the subtask" not in out
    recorded = yaml.safe_load((digits_config.parent / "run" / "config.yaml").read_text())
    assert recorded["train"]["device"] == "cpu"


def test_fit_subspace_prints_and_saves(digits_config, capsys):
    assert main(["fit-subspace", str(digits_config)]) == 0
    out = capsys.readouterr().out
    assert "layer2" in out and "layer3" in out
    assert (digits_config.parent / "run" / "bases.safetensors").is_file()


def test_fit_subspace_then_distill_is_the_run_distill_alone_gives(digits_config, tmp_path):
    assert main(["fit-subspace", str(digits_config)]) == 0
    assert main(["distill", str(digits_config)]) == 0  # bases alone are not an earlier run
    assert main(["distill", str(digits_config), "--set", f"run_dir={tmp_path / 'alone'}"]) == 0
    for name in ("model_best.safetensors", "model_last.safetensors"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()


def test_user_errors_are_one_line_without_traceback(digits_config, capsys):
    status = main(["distill", str(digits_config), "--set", "pairs.layer9=layer3"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and "layer9" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert main(["distill", str(digits_config), "--set", "train.epoch=1"]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err


def test_methods_and_layers_listings(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "subdistill" in out and "lambda:" in out and "calibration" in out and "kd" in out
    basis = next(line for line in out.splitlines() if line.strip().startswith("basis:"))
    assert '"subdistill"' in basis and "one of " in basis and "pca" in basis
    assert any("energy_norm:" in line and "true or false" in line for line in out.splitlines())
    assert any("temperature:" in line and "a number in (0, 1000]" in line
               for line in out.splitlines())
    assert main(["layers", "cifar_resnet", "--set", "widths=[8,16,32]", "--input-size", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "32" in out


@pytest.mark.parametrize("kind, expected", [
    ("methods", "subdistill"), ("models", "resnet18"), ("datasets", "cifar10-jpeg"),
    ("subtasks", "vehicles"), ("attributions", "lrp"), ("augmentations", "crop-flip"),
    ("bases", "prca-abs"), ("optimizers", "sgd"), ("schedules", "cosine"), ("loggers", "tensorboard")])
def test_list_names_every_kind(kind, expected, capsys):
    assert main(["list", kind]) == 0
    assert expected in capsys.readouterr().out.split()


def test_toy_runs(tmp_path, capsys):
    assert main(["toy", "--task", "0", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "xor_toy.csv").is_file()
    assert "subdistill" in capsys.readouterr().out


def test_help_for_every_command(capsys):
    for command in ("distill", "fit-subspace", "demo", "toy", "layers", "methods"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_multi_line_messages_are_printed_on_one_line(tmp_path, capsys):
    weights = tmp_path / "other.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, depth=8, widths=[4, 8, 8]), weights)
    config = {"teacher": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [8, 16, 16]},
                          "weights": str(weights)},
              "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
              "data": {"dataset": "digits"}, "pairs": {"layer3": "layer3"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "shape" in err


def test_train_teacher_trains_all_classes_and_resumes(tmp_path, capsys):
    config = {"model": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [8, 16, 16]}},
              "data": {"dataset": "digits"},
              "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "progress": False},
              "run_dir": str(tmp_path / "teacher")}
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train-teacher", str(path)]) == 0
    run = tmp_path / "teacher"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    model = create_model("cifar_resnet", 10, 1, depth=8, widths=[8, 16, 16],
                         weights=run / "model_best.safetensors")  # loads strictly
    assert model.fc.out_features == 10
    stamp = (run / "model_best.safetensors").stat().st_mtime_ns
    assert main(["train-teacher", str(path), "--resume"]) == 0  # finished: nothing retrained
    assert (run / "model_best.safetensors").stat().st_mtime_ns == stamp
    assert "teacher weights" in capsys.readouterr().out
