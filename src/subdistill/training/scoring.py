"""After training: the student's and the teacher's accuracies, the result and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..methods import DistillMethod
from ..methods.layerwise import LayerwiseMethod
from ..models.registry import count_parameters
from .config import TrainConfig
from .evaluate import accuracy, confusion_matrix, per_class_accuracy, share_correct
from .state import TrainingState
from .teacher_cache import cached_accuracy


@dataclass
class DistillResult:
    """Outcome of :func:`distill`: the student with its best-validation weights and the scores."""

    student: nn.Module
    method: DistillMethod
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float | None
    teacher_val_accuracy: float | None
    teacher_test_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    prepare_seconds: float = 0.0  # this process's fit, cache and calibration before training
    test_confusion: list[list[int]] | None = None  # rows: true classes, columns: predictions


def score(state: TrainingState, teacher: nn.Module | None, val: Dataset, test: Dataset | None,
          cfg: TrainConfig, device: torch.device, run_dir: str | Path | None) -> DistillResult:
    """The result of a finished run: the student's (best weights) test accuracy and confusion
    matrix, the
    teacher's validation and test accuracies (remembered in the teacher cache when there is
    one). In a process group every process scores its share."""

    confusion = None if test is None else confusion_matrix(
        state.student, test, device, cfg.eval_batch_size, cfg.precision, sharded=True)

    def teacher_accuracy(data: Dataset | None) -> float | None:
        if teacher is None or data is None:
            return None
        if not cfg.teacher_cache:
            return accuracy(teacher, data, device, cfg.eval_batch_size, cfg.precision,
                            sharded=True)
        return cached_accuracy(cfg.teacher_cache, teacher, data, device=device,
                               batch_size=cfg.eval_batch_size, precision=cfg.precision)

    return DistillResult(
        student=state.student, method=state.method, best_epoch=state.best["epoch"],
        best_val_accuracy=state.best["val_accuracy"],
        test_accuracy=None if confusion is None else share_correct(confusion),
        teacher_val_accuracy=teacher_accuracy(val), teacher_test_accuracy=teacher_accuracy(test),
        history=state.history, run_dir=Path(run_dir) if run_dir is not None else None,
        test_confusion=None if confusion is None else confusion.tolist())


def describe_inputs(data: Dataset) -> dict[str, Any]:
    """What a deployed student needs to know of its inputs and outputs: the class names, the
    image shape, the normalisation (an :class:`~subdistill.data.ImageDataset`'s ``mean`` and
    ``std``) and, for images decoded from files, the resize applied before the centre crop."""
    base = getattr(data, "base", data)
    found: dict[str, Any] = {"classes": list(getattr(data, "classes", []) or []),
                             "input_shape": list(data[0][0].shape),
                             "mean": list(getattr(data, "mean", []) or []),
                             "std": list(getattr(data, "std", []) or [])}
    if hasattr(base, "resize"):
        found["resize"] = int(base.resize)
    return {key: value for key, value in found.items() if value != []}


def summary(result: DistillResult, cfg: TrainConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """The contents of ``summary.json``: the scores (with the test confusion matrix and each
    class's test accuracy), the student's size, the run's length, for a layer-wise method its
    layer weights, and the inputs (:func:`describe_inputs`)."""
    method = result.method
    confusion = result.test_confusion
    per_class = {} if confusion is None else {
        "test_per_class_accuracy": dict(zip(_class_names(inputs, len(confusion)),
                                            per_class_accuracy(torch.tensor(confusion)))),
        "test_confusion": confusion}
    return {
        "method": method.name, "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy, "test_accuracy": result.test_accuracy,
        "teacher_val_accuracy": result.teacher_val_accuracy,
        "teacher_test_accuracy": result.teacher_test_accuracy, **per_class,
        "student_parameters": count_parameters(result.student),
        "epochs": cfg.epochs, "seconds": sum(row["seconds"] for row in result.history),
        "prepare_seconds": result.prepare_seconds,
        **({"layer_weights": method.named_weights()}
           if isinstance(method, LayerwiseMethod) else {}), "inputs": inputs}


def _class_names(inputs: dict[str, Any], count: int) -> list[str]:
    """The subtask's class names of ``inputs``, else the class indices as text."""
    names = [str(name) for name in inputs.get("classes", [])]
    return names if len(names) == count else [str(i) for i in range(count)]
