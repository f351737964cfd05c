"""Shared fixtures: small models and data that run in milliseconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
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
