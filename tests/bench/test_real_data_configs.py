"""The real-data benchmark configs (configs/bench-*.yaml) describe grids that can run: their
students have at most 1/10 of the teacher's parameters, every layer pair resolves with the width
SubDistill needs (k <= teacher channels), and every method accepts the options the grid gives it.
Random weights stand in for the teachers; the data's image shape is given here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from subdistill.bench import BenchConfig
from subdistill.bench.grid import final_cells
from subdistill.config import load_config
from subdistill.methods import build_method
from subdistill.models import count_parameters, create_model
from subdistill.training.pairs import probe_pairs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
IMAGES = {"cifar10-jpeg": (3, 32), "fashion-mnist": (1, 28)}  # channels, side
REAL_DATA = ["bench-cifar10.yaml", "bench-fashion-mnist.yaml", "bench-fashion-mnist-mobile.yaml"]
CONVERGED = {"bench-cifar10.yaml", "bench-fashion-mnist.yaml"}  # issue 14's converged grids


def _model(config, num_classes: int, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(config.name, num_classes=num_classes, in_channels=channels,
                        **config.args).eval()


@pytest.mark.parametrize("name", REAL_DATA)
def test_bench_config_describes_a_runnable_grid(name):
    config = load_config(CONFIGS / name, cls=BenchConfig)
    channels, side = IMAGES[config.data.dataset]
    # paths are relative to the config's folder: the repository's weights/ and runs/
    assert Path(config.teacher.weights).parent == CONFIGS.parent / "weights"
    teacher = _model(config.teacher, 10, channels)
    student = _model(config.student, 4, channels)
    assert count_parameters(student) * 10 <= count_parameters(teacher)
    pairs = probe_pairs(teacher, student, config.pairs, torch.randn(2, channels, side, side))
    assert [p.teacher for p in pairs] == list(config.pairs)
    cells = final_cells(config.grid, {(s, m): config.grid.lambdas[0] for s in config.grid.subtasks
                                      for m in config.grid.methods})
    for cell in cells:
        build_method(cell.method, pairs, **cell.options(config.grid))
    epochs = {rho: config.grid.epochs_at(rho, config.train.epochs) for rho in config.grid.rhos}
    if name in CONVERGED:  # every rho sees at least the selection rho's student steps
        steps = config.train.epochs * config.grid.selection_rho
        assert all(epochs[rho] * rho >= steps - 1e-9 for rho in config.grid.rhos), epochs
    else:  # a short grid names its epochs per rho
        assert set(config.grid.epochs) == set(config.grid.rhos)
    assert Path(config.train.teacher_cache).is_relative_to(CONFIGS.parent / "runs")


def test_all_real_data_bench_configs_are_tested():
    found = {p.name for p in CONFIGS.glob("bench-*.yaml")} - {"bench-digits.yaml"}
    assert found == set(REAL_DATA)
