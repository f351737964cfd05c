"""A finished tiny digits run (saved random teacher, one KD epoch), made once per session."""

import pytest
import yaml

from subdistill.cli import main
from subdistill.models import create_model, save_weights


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deploy")
    args = {"depth": 8, "widths": [8, 8, 8]}
    weights = folder / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **args), weights)
    config = {"teacher": {"name": "cifar_resnet", "args": args, "weights": str(weights)},
              "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 4, 8]}},
              "data": {"dataset": "digits", "subtask": "confusable"}, "method": {"name": "kd"},
              "train": {"epochs": 1, "batch_size": 64, "progress": False},
              "run_dir": str(folder / "run")}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["distill", str(path)]) == 0
    return folder / "run"
