"""Turning a validated config into data, models and a finished distillation run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from .config import DataConfig, DistillConfig, ModelConfig, TeacherConfig, to_dict
from .data import ImageDataset, Subtask, SubtaskSplits, load_dataset, make_splits
from .errors import ConfigError
from .methods import build_method
from .methods.subdistill import SubDistill
from .models import count_parameters, create_model
from .models.restricted import restrict_teacher
from .models.stages import auto_pairs
from .subspace import Basis
from .training.config import TrainConfig
from .training.run_files import RunFiles
from .training.scoring import DistillResult
from .training.setup import build_checked_method, check_outputs, setup_method
from .training.trainer import distill, seed_everything

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """Full training/test datasets of all classes and the subtask's splits."""

    train_full: ImageDataset
    test_full: ImageDataset
    splits: SubtaskSplits

    @property
    def subtask(self) -> Subtask:
        return self.splits.subtask


def load_full_data(config: DataConfig) -> tuple[ImageDataset, ImageDataset]:
    """The dataset's official training and test splits, all classes (loaded with the
    loader's ``config.options``)."""
    train, test = (load_dataset(config.dataset, split, config.root, config.download,
                                **config.options) for split in ("train", "test"))
    return train, test


def load_task_data(config: DataConfig, seed: int = 0,
                   full: tuple[ImageDataset, ImageDataset] | None = None) -> TaskData:
    """Resolve the subtask and split it (``full``: already loaded training and test sets)."""
    train_full, test_full = full or load_full_data(config)
    subtask = Subtask.resolve(config.subtask, train_full.classes, getattr(train_full, "family", None))
    splits = make_splits(train_full, test_full, subtask, config.rho, config.val_fraction, seed)
    return TaskData(train_full, test_full, splits)


RESERVED_ARGS = {"name": "model.name", "num_classes": "the subtask", "in_channels": "the data",
                 "pretrained": "model.pretrained", "weights": "model.weights"}


def build_model(config: ModelConfig, num_classes: int, in_channels: int) -> nn.Module:
    """Create a model from its config (registry name, arguments, weights)."""
    for key, source in RESERVED_ARGS.items():
        if key in config.args:
            raise ConfigError(f"model args must not set {key!r}: it comes from {source}")
    return create_model(config.name, num_classes=num_classes, in_channels=in_channels,
                        pretrained=config.pretrained, weights=config.weights, **config.args)


def resolve_pairs(config: DistillConfig, teacher: nn.Module, student: nn.Module,
                  data: TaskData) -> dict[str, str]:
    """The config's layer pairs; ``pairs: auto`` becomes the stage pairs
    (:func:`subdistill.models.stages.auto_pairs`) of its teacher and student."""
    if isinstance(config.pairs, dict):
        return config.pairs
    pairs = auto_pairs(teacher, student, data.splits.train[0][0][None])
    log.info("pairs: auto -> %s", ", ".join(f"{t}: {s}" for t, s in pairs.items()))
    return pairs


def build_teacher_student(config: DistillConfig, data: TaskData) -> tuple[nn.Module, nn.Module]:
    """The teacher (all classes, restricted to the subtask) and a fresh student (subtask classes)."""
    in_channels = data.train_full.image_shape[0]
    seed_everything(config.train.seed)
    teacher = build_model(config.teacher, len(data.train_full.classes), in_channels)
    if config.teacher.weights is None and not config.teacher.pretrained:
        log.warning("the teacher has neither weights nor pretrained=true: it is untrained and "
                    "the distilled student will learn nothing useful")
    seed_everything(config.train.seed)
    student = build_model(config.student, len(data.subtask), in_channels)
    return restrict_teacher(teacher, data.subtask), student


def run_distill(config: DistillConfig, resume: bool = False,
                full: tuple[ImageDataset, ImageDataset] | None = None,
                overwrite: bool = False) -> DistillResult:
    """Run the distillation a config describes, writing its run directory (``resume``:
    continue from its checkpoint; ``overwrite``: replace an earlier run there; ``full``:
    already loaded training and test sets)."""
    data = load_task_data(config.data, config.train.seed, full)
    teacher, student = build_teacher_student(config, data)
    pairs = resolve_pairs(config, teacher, student, data)
    config = replace(config, pairs=pairs)  # recorded resolved in config.yaml
    return distill(
        teacher, student, data.splits.train, data.splits.val, test=data.splits.test,
        method=config.method["name"], pairs=pairs, options=config.method_options(),
        config=config.train, run_dir=config.run_dir, record=to_dict(config), resume=resume,
        overwrite=overwrite,
    )


def run_fit_subspaces(config: DistillConfig) -> tuple[dict[str, Basis], Path]:
    """Fit (or reuse) the bases a SubDistill run of ``config`` would use, and save them."""
    data = load_task_data(config.data, config.train.seed)
    teacher, student = build_teacher_student(config, data)
    method = setup_method(teacher, student, data.splits.train, method=config.method["name"],
                          pairs=resolve_pairs(config, teacher, student, data),
                          options=config.method_options(), config=config.train,
                          run_dir=config.run_dir)
    if not isinstance(method, SubDistill):
        raise ConfigError(f"fit-subspace needs method subdistill, not {config.method['name']!r}")
    assert method.bases_path is not None, "a run directory gives the bases a file"
    return method.bases, method.bases_path


def check_config(config: DistillConfig,
                 full: tuple[ImageDataset, ImageDataset] | None = None) -> str:
    """Validate everything a run of ``config`` needs without training: data and subtask,
    models and weights, layer paths and shapes, method options. Returns a report (``full``:
    already loaded training and test sets)."""
    files = RunFiles(config.run_dir)  # a file where the run directory should be is refused
    data = load_task_data(config.data, config.train.seed, full)
    teacher, student = build_teacher_student(config, data)
    pairs = resolve_pairs(config, teacher, student, data)
    method = build_checked_method(teacher, student, data.splits.train,
                                  method=config.method["name"], pairs=pairs,
                                  options=config.method_options(), device=config.train.device)
    splits = data.splits
    lines = [f"subtask {data.subtask.name}: {', '.join(data.subtask.names)}",
             f"images: {len(splits.train)} train, {len(splits.val)} validation, "
             f"{len(splits.test)} test",
             f"parameters: teacher {count_parameters(teacher):,}, "
             f"student {count_parameters(student):,}",
             f"method {method.name}: {method.description}",
             *([f"pairs: auto -> {pairs}"] if config.pairs == "auto" else []),
             f"run_dir {config.run_dir}: " + ("holds an earlier run (needs --resume or "
                                              "--overwrite)" if files.holds_run() else "free")]
    for p in method.pairs:
        lines.append(f"pair {p.teacher} ({p.teacher_channels}x{p.teacher_size[0]}x"
                     f"{p.teacher_size[1]}) -> {p.student} ({p.student_channels}x"
                     f"{p.student_size[0]}x{p.student_size[1]}), compared at "
                     f"{p.compared_size[0]}x{p.compared_size[1]}")
    return "\n".join(lines)


def check_teacher_config(config: TeacherConfig) -> str:
    """Validate a teacher config without training: the data, the model and its output width
    on one image, the validation split. Returns a report."""
    build_method("student-only", label_smoothing=config.label_smoothing)  # its range
    train_full, test_full = load_full_data(config.data)
    model = build_model(config.model, len(train_full.classes), train_full.image_shape[0])
    every_class = Subtask(tuple(range(len(train_full.classes))), tuple(train_full.classes), "all")
    splits = make_splits(train_full, test_full, every_class, rho=1 - config.data.val_fraction,
                         val_fraction=config.data.val_fraction, seed=config.train.seed)
    check_outputs(None, model, train_full[0][0][None], len(train_full.classes))
    return (f"{config.data.dataset}: {len(train_full.classes)} classes, images "
            f"{'x'.join(map(str, train_full.image_shape))}; {len(splits.train)} train, "
            f"{len(splits.val)} validation, {len(splits.test)} test\n"
            f"model {config.model.name}: {count_parameters(model):,} parameters")


def train_classifier(model: nn.Module, train_full: ImageDataset, test_full: ImageDataset,
                     config: TrainConfig, *, val_fraction: float = 0.2,
                     run_dir: str | Path | None = None, record: dict | None = None,
                     resume: bool = False, overwrite: bool = False,
                     label_smoothing: float = 0.0) -> DistillResult:
    """Train ``model`` on every class with cross-entropy (a teacher; optionally with
    ``label_smoothing``): validation =
    ``val_fraction`` of the official training images (seeded, stratified), training = the rest,
    test = the official test images; the best-validation weights are kept."""
    every_class = Subtask(tuple(range(len(train_full.classes))), tuple(train_full.classes), "all")
    splits = make_splits(train_full, test_full, every_class, rho=1 - val_fraction,
                         val_fraction=val_fraction, seed=config.seed)
    options = {"label_smoothing": label_smoothing} if label_smoothing else {}
    return distill(None, model, splits.train, splits.val, method="student-only",
                   options=options, test=splits.test, config=config, run_dir=run_dir,
                   record=record, resume=resume, overwrite=overwrite)


def run_train_teacher(config: TeacherConfig, resume: bool = False,
                      overwrite: bool = False) -> DistillResult:
    """Train the teacher a config describes; its weights are ``run_dir/model_best.safetensors``."""
    train_full, test_full = load_full_data(config.data)
    seed_everything(config.train.seed)
    model = build_model(config.model, len(train_full.classes), train_full.image_shape[0])
    return train_classifier(model, train_full, test_full, config.train,
                            val_fraction=config.data.val_fraction, run_dir=config.run_dir,
                            record=to_dict(config), resume=resume, overwrite=overwrite,
                            label_smoothing=config.label_smoothing)
