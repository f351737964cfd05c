"""The cells of a benchmark grid and the choice of λ (pure functions, no training)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import Any

from ..config import DistillConfig
from ..methods import method_class
from ..results import SubtaskSpec, path_safe, subtask_label
from .config import BenchConfig, GridConfig


def uses_lambda(method: str) -> bool:
    """Whether ``method`` has a layer weight λ."""
    return "lambda" in method_class(method).hparams


@dataclass(frozen=True)
class Cell:
    """One training run of the grid. ``stage`` is ``select`` (a λ candidate) or ``final``."""

    stage: str
    subtask: SubtaskSpec
    method: str
    rho: float
    seed: int
    lam: float | None = None

    @property
    def key(self) -> tuple:
        return (subtask_label(self.subtask), self.method)

    @property
    def path(self) -> PurePath:
        """Run directory of the cell, relative to the grid's output folder."""
        path = PurePath(self.stage, subtask_label(self.subtask), path_safe(self.method),
                        f"rho{self.rho:g}", f"seed{self.seed}")
        return path / f"lambda{self.lam:g}" if self.stage == "select" else path

    def options(self, grid: GridConfig) -> dict[str, Any]:
        """The method's options in this cell: the grid's fixed ones and λ."""
        options = dict(grid.options.get(self.method, {}))
        if self.lam is not None:
            options["lambda"] = self.lam
        return options


def selection_cells(grid: GridConfig) -> list[Cell]:
    """Runs that choose λ: every candidate, for every subtask and layer-wise method, at
    ``selection_rho`` and ``selection_seed`` (none for a method with a single candidate)."""
    return [Cell("select", subtask, method, grid.selection_rho, grid.selection_seed, lam)
            for subtask in grid.subtasks for method in grid.methods
            if uses_lambda(method) and len(grid.candidates(method)) > 1
            for lam in grid.candidates(method)]


def choose_lambdas(grid: GridConfig, results: Iterable[tuple[Cell, float]]) -> dict[tuple, float]:
    """λ per (subtask, method): the candidate with the best validation accuracy (the first
    of the method's candidates among equals); the only candidate when there is one."""
    chosen: dict[tuple, tuple[float, float]] = {}
    for cell, val_accuracy in results:
        assert cell.lam is not None, "selection cells have a λ"
        order = grid.candidates(cell.method).index
        best = chosen.get(cell.key)
        if best is None or (val_accuracy, -order(cell.lam)) > (best[1], -order(best[0])):
            chosen[cell.key] = (cell.lam, val_accuracy)
    lambdas = {key: lam for key, (lam, _) in chosen.items()}
    for subtask in grid.subtasks:
        for method in grid.methods:
            if uses_lambda(method):
                lambdas.setdefault((subtask_label(subtask), method), grid.candidates(method)[0])
    return lambdas


def final_cells(grid: GridConfig, lambdas: Mapping[tuple, float]) -> list[Cell]:
    """Every (subtask, method, rho, seed) run with its chosen λ."""
    cells = []
    for subtask in grid.subtasks:
        for method in grid.methods:
            lam = lambdas[(subtask_label(subtask), method)] if uses_lambda(method) else None
            cells += [Cell("final", subtask, method, rho, seed, lam)
                      for rho in grid.rhos for seed in grid.seeds]
    return cells


def same_run(cell: Cell, candidates: Sequence[Cell]) -> Cell | None:
    """A selection cell that is exactly the run ``cell`` asks for (reused, not rerun)."""
    for other in candidates:
        if (other.key, other.rho, other.seed, other.lam) == (cell.key, cell.rho, cell.seed, cell.lam):
            return other
    return None


def shared_bases(cell: Cell, out: Path) -> Path:
    """Where the cells of one (subtask, rho, seed) keep the bases they share: the training
    split, the teacher and the pairs are the same, so every λ candidate and the final run of
    a method with a basis read one fit (its metadata is checked on every read)."""
    return (out / "bases" / subtask_label(cell.subtask) / f"rho{cell.rho:g}" / f"seed{cell.seed}"
            / "bases.safetensors")


def cell_config(config: BenchConfig, cell: Cell, out: Path) -> DistillConfig:
    """The distillation config of one cell (a method with a basis reads the shared one,
    unless the grid's options name a ``bases_file``)."""
    options = cell.options(config.grid)
    if "bases_file" in method_class(cell.method).hparams and not options.get("bases_file"):
        options["bases_file"] = str(shared_bases(cell, out))
    return DistillConfig(
        teacher=config.teacher, student=config.student,
        data=replace(config.data, subtask=cell.subtask, rho=cell.rho),
        method={"name": cell.method, **options}, pairs=config.pairs,
        train=replace(config.train, seed=cell.seed,
                      epochs=config.grid.epochs_at(cell.rho, config.train.epochs)),
        run_dir=str(out / cell.path), imports=config.imports)
