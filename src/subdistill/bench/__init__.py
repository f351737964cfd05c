"""Benchmark grids: methods × subtasks × training fractions × seeds, resumable, with reports."""

from .config import AgreementConfig, BenchConfig, GridConfig
from .grid import Cell, choose_lambdas, final_cells, selection_cells
from .runner import run_bench

__all__ = ["AgreementConfig", "BenchConfig", "Cell", "GridConfig", "choose_lambdas", "final_cells",
           "run_bench", "selection_cells"]
