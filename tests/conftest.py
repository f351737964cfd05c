"""Shared fixtures: small models and data that run in milliseconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import settings
from torch import nn
from torch.utils.data import TensorDataset

# CI replays the same generated examples on every run (random exploration stays local)
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class TinyCNN(nn.Module):
    """Two conv stages and a linear head; stage outputs are tapped by tests."""

    def __init__(self, channels: tuple[int, int] = (6, 8), num_classes: int = 3, in_channels: int = 3):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1),
                                    nn.BatchNorm2d(channels[1]), nn.ReLU())
        self.head = nn.Linear(channels[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN()


@pytest.fixture
def tiny_images() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 8, 8, generator=generator)
    y = torch.randint(0, 3, (40,), generator=generator)
    return TensorDataset(x, y)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny digits run (saved random teacher, one KD epoch), made once."""
    from subdistill.cli import main
    from subdistill.models import create_model, save_weights

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
