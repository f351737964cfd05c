"""The YAML config of a benchmark grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from ..config import DataConfig, ModelConfig
from ..errors import ConfigError
from ..methods import list_methods, method_class
from ..training import TrainConfig


@dataclass
class GridConfig:
    """What varies: methods, subtasks, training fractions rho, seeds, and the λ candidates.

    λ is chosen once per (subtask, layer-wise method) on the validation split of the run at
    ``selection_rho`` and ``selection_seed``, and reused for every other cell. ``lambdas`` is
    one list of candidates for every layer-wise method (with the default ``calibration:
    gradient`` they are ratios to the KD term, comparable across methods) or a mapping from
    method to its own list (e.g. raw weights around each paper's value with ``calibration:
    none`` in ``options``). ``options`` fixes
    further hyper-parameters per method, e.g. ``{vid: {init_variance: 5.0}}``. ``epochs`` maps
    a rho to its number of training epochs; a rho not listed trains ``train.epochs`` scaled
    by ``selection_rho / rho`` (rounded up; never fewer than ``train.epochs``), so a run on
    scarcer data takes about as many student steps as one at ``selection_rho``
    (:meth:`epochs_at`). Entries for rhos outside ``rhos`` are unused, so a grid narrowed
    to fewer rhos keeps its config.
    """

    methods: list[str] = field(default_factory=lambda: ["subdistill", "kd"])
    subtasks: list[Union[str, list[Union[int, str]], dict[str, Any]]] = field(
        default_factory=lambda: ["confusable"])
    rhos: list[float] = field(default_factory=lambda: [0.8])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lambdas: Union[list[float], dict[str, list[float]]] = field(default_factory=lambda: [1.0])
    selection_rho: float = 0.8
    selection_seed: int = 0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: dict[float, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rho, epochs in self.epochs.items():
            if not epochs > 0:
                raise ConfigError(f"grid.epochs[{rho:g}] must be positive, got {epochs}")
        if self.methods == ["all"]:
            self.methods = list_methods()
        for name in [*self.methods, *self.options]:
            method_class(name)
        for key in ("methods", "subtasks", "rhos", "seeds", "lambdas"):
            if not getattr(self, key):
                raise ConfigError(f"grid.{key} must not be empty")
        for name, options in self.options.items():
            if "lambda" in options:
                raise ConfigError(f"grid.options.{name}.lambda: λ comes from grid.lambdas")
        self._check_lambdas()

    def _check_lambdas(self) -> None:
        """A per-method ``lambdas`` mapping names methods and covers every layer-wise one."""
        if isinstance(self.lambdas, dict):
            layerwise = [m for m in self.methods if "lambda" in method_class(m).hparams]
            for name in self.lambdas:
                method_class(name)
            for name in layerwise:
                if not self.lambdas.get(name):
                    raise ConfigError(f"grid.lambdas has no candidates for method {name}: give "
                                      "every layer-wise method of grid.methods a list")

    def epochs_at(self, rho: float, epochs: int) -> int:
        """The training epochs of a run at ``rho`` when ``train.epochs`` is ``epochs``."""
        if rho in self.epochs:
            return self.epochs[rho]
        return max(epochs, math.ceil(epochs * self.selection_rho / rho - 1e-9))

    def candidates(self, method: str) -> list[float]:
        """The λ candidates of ``method``."""
        return self.lambdas[method] if isinstance(self.lambdas, dict) else self.lambdas


@dataclass
class AgreementConfig:
    """Optional explanation columns: once the grid is done, the final students of ``seed`` at
    ``rho`` are explained next to the teacher (as by ``subdistill explain``) on ``images``
    test images per subtask, and their mean heatmap correlation with the teacher joins that
    rho's tables, one column per attribution method. No ``attributions``: no columns."""

    attributions: list[str] = field(default_factory=list)
    images: int = 32
    rho: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attributions:
            from ..explain.attribution import ATTRIBUTIONS  # zennit, captum: on use

            for name in self.attributions:
                ATTRIBUTIONS.get(name)
        if self.images < 2:
            raise ConfigError(f"agreement.images must be at least 2, got {self.images}")


@dataclass
class BenchConfig:
    """A grid over one teacher, one student architecture and one dataset. ``data.subtask`` and
    ``data.rho`` are ignored: the grid sets them per cell."""

    teacher: ModelConfig
    student: ModelConfig
    grid: GridConfig = field(default_factory=GridConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pairs: Union[dict[str, str], str] = field(default_factory=dict)  # or "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    agreement: AgreementConfig = field(default_factory=AgreementConfig)
    out_dir: str = "runs/bench"
    # a committed CSV of finished runs (e.g. benchmarks/results/<grid>.csv): cells recorded
    # there with the same settings are not run again, on any machine; "" = none
    ledger: str = ""
    imports: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.agreement.attributions and (self.agreement.rho not in self.grid.rhos or
                                            self.agreement.seed not in self.grid.seeds):
            raise ConfigError(f"agreement: rho {self.agreement.rho:g} and seed "
                              f"{self.agreement.seed} must be among grid.rhos and grid.seeds")
        layerwise = [m for m in self.grid.methods if method_class(m).uses_layers]
        if layerwise and not self.pairs:
            raise ConfigError(f"methods {', '.join(layerwise)} need layer pairs: set `pairs`")
