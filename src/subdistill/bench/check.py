"""Checking a benchmark grid before it runs: every cell's data split, and one cell per method
(models, weights, layer pairs, options), without training."""

from __future__ import annotations

from pathlib import Path

from ..data import ImageDataset, Subtask, make_splits
from ..errors import ConfigError
from ..jobs import check_config, load_full_data
from ..results import subtask_label
from .config import BenchConfig
from .grid import Cell, cell_config, uses_lambda


def check_files(config: BenchConfig) -> None:
    """The files a grid reads exist, before any data is loaded: the teacher's (and a given
    student's) weights and, when given, the ledger (a file or not there yet)."""
    for role, model in (("teacher", config.teacher), ("student", config.student)):
        if model.weights and not Path(model.weights).is_file():
            raise ConfigError(f"{role}.weights {model.weights} is not a file"
                              + ("" if Path(model.weights).exists() else " (it does not exist)"))
    if config.ledger and Path(config.ledger).exists() and not Path(config.ledger).is_file():
        raise ConfigError(f"the ledger {config.ledger} is not a file")


def check_bench(config: BenchConfig,
                full: tuple[ImageDataset, ImageDataset] | None = None) -> str:
    """Validate every (subtask, rho, seed) split of the grid and build one cell per method;
    a report. ``full``: the dataset's training and test sets, already loaded."""
    check_files(config)
    train_full, test_full = full or load_full_data(config.data)
    grid, lines = config.grid, []
    for spec in grid.subtasks:
        subtask = Subtask.resolve(spec, train_full.classes, train_full.family)
        for rho in sorted({*grid.rhos, grid.selection_rho}):
            for seed in sorted({*grid.seeds, grid.selection_seed}):
                make_splits(train_full, test_full, subtask, rho, config.data.val_fraction, seed)
        lines.append(f"subtask {subtask_label(spec)}: {', '.join(subtask.names)}")
    for method in grid.methods:
        lam = grid.candidates(method)[0] if uses_lambda(method) else None
        cell = Cell("final", grid.subtasks[0], method, grid.rhos[0], grid.seeds[0], lam)
        check_config(cell_config(config, cell, Path(config.out_dir)), full=(train_full, test_full))
        lines.append(f"method {method}: models, weights, layer pairs and options OK")
    cells = len(grid.subtasks) * len(grid.methods) * len(grid.rhos) * len(grid.seeds)
    lines.append(f"{cells} final runs, {len(grid.subtasks)} subtasks x {len(grid.methods)} "
                 f"methods x {len(grid.rhos)} rhos x {len(grid.seeds)} seeds")
    return "\n".join(lines)
