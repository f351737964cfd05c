"""The interface every distillation method implements, and the registry that finds them.

A method is built from the layer pairs (with the shapes of the paired maps) and its
hyper-parameters, owns its training-only heads (optimised with the student, never saved with
it) and turns one step's outputs into a dict of named, already weighted loss terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from ..errors import ConfigError, closest
from ..registry import Registry


@dataclass(frozen=True)
class LayerPair:
    """A distilled (teacher layer, student layer) pair and the shapes of their maps."""

    teacher: str
    student: str
    teacher_channels: int
    student_channels: int
    teacher_size: tuple[int, int]
    student_size: tuple[int, int]

    @property
    def compared_size(self) -> tuple[int, int]:
        """Spatial size at which the two maps are compared (the smaller one's)."""
        t, s = self.teacher_size, self.student_size
        return t if t[0] * t[1] <= s[0] * s[1] else s


@dataclass
class StepOutputs:
    """What the trainer hands to a method at each step. Feature maps are (B, C, H, W) grids
    keyed by layer path; teacher entries are empty/None for methods without a teacher."""

    student_logits: Tensor
    labels: Tensor
    teacher_logits: Tensor | None = None
    student_features: dict[str, Tensor] = field(default_factory=dict)
    teacher_features: dict[str, Tensor] = field(default_factory=dict)
    epoch: int = 1  # the current epoch, counted from 1
    epochs: int = 1  # the run's number of epochs

    def needed_teacher_logits(self) -> Tensor:
        """The teacher's logits, for a method that needs a teacher (an error without)."""
        if self.teacher_logits is None:
            raise ConfigError("this method needs the teacher's logits, but the step has none: "
                              "give a teacher")
        return self.teacher_logits

    @property
    def progress(self) -> float:
        """Fraction of training done at the end of the current epoch (``epoch / epochs``)."""
        return self.epoch / self.epochs


@dataclass
class PrepareContext:
    """Resources a method may use once before training (e.g. to fit subspaces)."""

    teacher: nn.Module | None
    fit_loader: Any
    device: Any
    seed: int = 0
    run_dir: Any = None
    progress: bool = False
    shard: tuple[int, int] = (0, 1)  # (rank, world size): fit_loader yields images rank::world
    data: str = ""  # fingerprint of the images fit_loader covers (all processes' shares)
    precision: str = "fp32"  # the teacher's forward in a fit: "fp32" or "bf16" autocast
    channels_last: bool = False
    # the run's own pass of the teacher over the unaugmented training images (building the
    # teacher-output cache), offered to a fit: teacher_pass(stats) feeds the
    # SubspaceStatistics ``stats`` from that pass and returns True, or returns False when the
    # run has no such pass left to make (the fit then makes its own pass over fit_loader)
    teacher_pass: Callable[[Any], bool] | None = None


class DistillMethod(nn.Module):
    """Base class: subclasses set the class attributes and implement :meth:`forward`."""

    name: ClassVar[str]
    description: ClassVar[str]
    hparams: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, Callable[[], Sequence[str]]]] = {}
    """The allowed values of string options (a function: a registry may grow by plugins)."""
    needs_teacher: ClassVar[bool] = True
    uses_layers: ClassVar[bool] = False

    def __init__(self, pairs: Sequence[LayerPair] = (), **options: Any):
        super().__init__()
        self.pairs = list(pairs)
        self.options = {**self.hparams, **options}
        for key, value in self.options.items():
            if key in OPTION_RANGES:
                check_range(self.name, key, value, *OPTION_RANGES[key])
            allowed = list(self.choices[key]()) if key in self.choices else None
            if allowed is not None and value not in allowed:
                raise ConfigError(f"method {self.name}: {key} must be one of "
                                  f"{', '.join(allowed)}, got {value!r}.{closest(str(value), allowed)}")

    def prepare(self, context: PrepareContext) -> None:
        """One-time set-up before training; the default does nothing."""

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        raise NotImplementedError


# The allowed values of the numeric options every method that has them shares:
# (lowest, highest, whether the lowest is excluded).
OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 1e3, True), "lambda": (0.0, 1e12, False),
    "ce_weight": (0.0, 1e6, False), "kd_weight": (0.0, 1e6, False),
    "alpha": (0.0, 1e6, False), "beta": (0.0, 1e6, False), "warmup": (0.0, 1.0, False),
    "init_variance": (0.0, 1e6, True), "positions": (0, 10**7, False),
    "label_smoothing": (0.0, 1.0, False),
}


def check_range(method: str, key: str, value: float, low: float, high: float,
                low_open: bool) -> None:
    """``value`` of option ``key`` is a finite number in [low, high] (or (low, high])."""
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):
        bracket = "(" if low_open else "["
        raise ConfigError(f"method {method}: {key} must be a finite number in {bracket}{low:g}, "
                          f"{high:g}], got {value}")


DISTILL_METHODS: Registry[type[DistillMethod]] = Registry(
    "method", ConfigError, "`subdistill list methods` describes them.")


def register_method(cls: type[DistillMethod]) -> type[DistillMethod]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    return DISTILL_METHODS.register(cls.name, cls)


def method_class(name: str) -> type[DistillMethod]:
    """The registered method called ``name``."""
    return DISTILL_METHODS.get(name)


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return DISTILL_METHODS.names()


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """``value`` of option ``key`` checked against the type of its default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"method {name}: option {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"method {name}: option {key!r} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"method {name}: option {key!r} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"method {name}: option {key!r} must be a string, got {value!r}")
    return value


def build_method(name: str, pairs: Sequence[LayerPair] = (), /, **options: Any) -> DistillMethod:
    """Instantiate method ``name`` for ``pairs``; unknown or ill-typed options are ConfigErrors."""
    cls = method_class(name)
    for key in options:
        if key not in cls.hparams:
            accepted = ", ".join(cls.hparams) or "none"
            raise ConfigError(f"method {name} has no option {key!r}.{closest(key, cls.hparams)} "
                              f"Its options: {accepted}")
    checked = {k: _coerce(name, k, v, cls.hparams[k]) for k, v in options.items()}
    if cls.uses_layers and not pairs:
        raise ConfigError(f"method {name} distils intermediate layers: give at least one layer "
                          "pair (teacher layer -> student layer)")
    return cls(pairs, **checked)


def allowed_values(cls: type[DistillMethod], key: str) -> str:
    """What option ``key`` of method ``cls`` accepts, for a reader: ``one of a, b``, ``a number
    in (0, 1000]``, ``true or false``, ..."""
    default = cls.hparams[key]
    if key in cls.choices:
        return "one of " + ", ".join(cls.choices[key]())
    if isinstance(default, bool):
        return "true or false"
    kind = "an integer" if isinstance(default, int) else "a number"
    if key in OPTION_RANGES:
        low, high, low_open = OPTION_RANGES[key]
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"
    return kind if isinstance(default, (int, float)) else "text"


def describe_methods() -> Mapping[str, type[DistillMethod]]:
    """Registered methods, sorted by name."""
    return dict(DISTILL_METHODS.items())
