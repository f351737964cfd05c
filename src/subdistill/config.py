"""Experiment configs: YAML files validated into dataclasses.

Unknown keys are rejected with the closest valid key, values are type-checked, and
``--set a.b=value`` overrides are applied to the raw mapping before validation. Every config
kind may list plugins under ``imports:`` (see :mod:`subdistill.plugins`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError, closest
from .plugins import import_plugins
from .training.config import TrainConfig


@dataclass
class ModelConfig:
    """A model by registry name (or ``module:callable``), its constructor arguments and optional
    weights: ``weights`` a local .safetensors file, ``pretrained`` true (the library's default
    published weights) or a weight set's name (torchvision's ``IMAGENET1K_V1``, ...)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    pretrained: bool | str = False


@dataclass
class DataConfig:
    """Dataset, subtask and splits (validation = val_fraction, training = rho of the training
    images); ``options`` are the dataset loader's keyword options (e.g. imagefolder's
    ``image_size``), checked against the loader when the data is loaded."""

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    subtask: Union[str, list[Union[int, str]], dict[str, Any]] = "confusable"
    rho: float = 0.8
    val_fraction: float = 0.2
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillConfig:
    """Everything a distillation run needs; ``method`` holds ``name`` and the method's options."""

    teacher: ModelConfig
    student: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "subdistill"})
    pairs: Union[dict[str, str], str] = field(default_factory=dict)  # or "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/distill"
    imports: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.data.options.get("train_crop", "none") != "none"
                and self.train.augment == "resized-crop-flip"):
            raise ConfigError("data.options.train_crop already crops every training image: "
                              "use train.augment: flip (resized-crop-flip would crop twice)")
        if isinstance(self.pairs, str) and self.pairs != "auto":
            raise ConfigError(f"pairs: a mapping teacher layer: student layer, or auto; got "
                              f"{self.pairs!r}")
        if not isinstance(self.method.get("name"), str):
            raise ConfigError("method.name is required (e.g. subdistill, kd); "
                              "`subdistill methods` lists them")

    def method_options(self) -> dict[str, Any]:
        """The method's hyper-parameters (``method`` without ``name``)."""
        return {k: v for k, v in self.method.items() if k != "name"}


@dataclass
class TeacherConfig:
    """Training a teacher on every class of a dataset (``data.subtask`` and ``data.rho`` are
    not used: validation is ``data.val_fraction`` of the training images, training the rest)."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/teacher"
    imports: list[str] = field(default_factory=list)
    label_smoothing: float = 0.0  # of the cross-entropy (method student-only's option)


def _type_name(tp: Any) -> str:
    """A reader's name of an annotation: ``a mapping or str``, ``a list``, ``int``, ..."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(tp))
    if origin in (dict, Mapping):
        return "a mapping"
    if origin in (list, Sequence):
        return "a list"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_union(value: Any, tp: Any, where: str) -> Any:
    for option in typing.get_args(tp):
        try:
            return _check(value, option, where)
        except ConfigError:
            pass
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _check_list(value: Any, tp: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    (item,) = typing.get_args(tp) or (Any,)
    return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]


def _check_dict(value: Any, tp: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    key_tp, value_tp = typing.get_args(tp) or (Any, Any)
    return {_check(k, key_tp, where): _check(v, value_tp, f"{where}.{k}")
            for k, v in value.items()}


def _check_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _check(value: Any, tp: Any, where: str) -> Any:
    """Validate ``value`` against the annotation ``tp``, building nested dataclasses."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _check_union(value, tp, where)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)  # type: ignore[arg-type]
    if origin in (list, Sequence):
        return _check_list(value, tp, where)
    if origin in (dict, Mapping):
        return _check_dict(value, tp, where)
    return _check_scalar(value, tp, where)


def from_mapping(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}.{closest(str(key), names)} "
                              f"Valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    values = {key: _check(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a raw config mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        *parents, last = dotted.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {part!r} is not a section")
            node = child
        node[last] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML config file into a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a UTF-8 text file ({err.reason} at byte {err.start}); "
                          "a config is YAML text") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


PATH_KEYS = ("teacher.weights", "student.weights", "model.weights", "data.root", "run_dir",
             "out_dir", "ledger", "train.teacher_cache", "method.bases_file", "bench",
             "students.*")
"""The settings that are file or folder paths (``*``: every value of the mapping)."""


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` (a raw config mapping) with its relative :data:`PATH_KEYS` taken relative to
    folder ``base`` (normalised: ``configs/../weights/t.safetensors`` is
    ``weights/t.safetensors``)."""
    def resolved(value: Any) -> Any:
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
            return value
        return os.path.normpath(base / value)

    for dotted in PATH_KEYS:
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if last == "*":
            node.update({key: resolved(value) for key, value in node.items()})
        elif last in node:
            node[last] = resolved(node[last])
    return data


def load_config(path: str | Path, overrides: Sequence[str] = (), cls: type = DistillConfig) -> Any:
    """Read, override and validate a config file. Relative paths in the file are relative to
    its folder (:func:`resolve_paths`), those of ``overrides`` to the working directory. The
    plugins its ``imports:`` list names (module names, or ``.py`` files relative to the
    config's folder) are imported first, so their methods, models and datasets are known to
    the validation."""
    data = apply_overrides(resolve_paths(read_yaml(path), Path(path).parent), overrides)
    import_plugins(data.get("imports", []), base=Path(path).parent)
    return from_mapping(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain mapping of a config dataclass (for writing the resolved config)."""
    return dataclasses.asdict(config)
