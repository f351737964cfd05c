"""A finished run's student as a deployable expert: what it is (its config), what it takes
(image shape, normalisation, resize) and what it answers (the subtask's class names)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from ..config import DataConfig, ModelConfig, from_mapping
from ..errors import ConfigError, SubdistillError
from ..jobs import build_model, load_task_data
from ..training.checkpoint import config_hash
from ..training.run_files import BEST_WEIGHTS, SUMMARY


@dataclass
class ExpertSpec:
    """Everything :func:`build_expert` and the exporters need to know about a run."""

    run_dir: Path
    student: ModelConfig
    teacher: ModelConfig | None
    data: DataConfig | None
    seed: int
    classes: list[str]
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    resize: int | None
    fingerprint: str

    @property
    def weights(self) -> Path:
        """The student's best-validation weights."""
        return self.run_dir / BEST_WEIGHTS

    def metadata(self) -> dict[str, Any]:
        """What an exported model carries: classes, input, normalisation, origin."""
        from .. import __version__

        return {"classes": self.classes, "input_shape": list(self.input_shape),
                "input": "float32 (batch, C, H, W) images with values in [0, 1]; the "
                         "normalisation is part of the model",
                "mean": self.mean, "std": self.std, "resize": self.resize,
                "subdistill": __version__, "run": str(self.run_dir),
                "run_fingerprint": self.fingerprint}


def load_spec(run_dir: str | Path) -> ExpertSpec:
    """The :class:`ExpertSpec` of a finished run directory (one written from a config:
    ``subdistill distill``, ``bench`` or ``demo``)."""
    run = Path(run_dir)
    for name in ("config.yaml", SUMMARY, BEST_WEIGHTS):
        if not (run / name).is_file():
            raise ConfigError(f"{run} is not a finished run directory: it has no {name}")
    config = yaml.safe_load((run / "config.yaml").read_text())
    inputs = json.loads((run / "summary.json").read_text()).get("inputs")
    if not isinstance(config.get("student", config.get("model")), dict) or not inputs:
        raise ConfigError(f"{run} was not written from a config (its config.yaml names no "
                          "student model, or its summary no inputs): export the model from "
                          "Python with subdistill.deploy.export.export_module")
    model = from_mapping(ModelConfig, config.get("student", config.get("model")), "student")
    teacher = config.get("teacher") if isinstance(config.get("teacher"), dict) else None
    shape = tuple(int(n) for n in inputs["input_shape"])
    return ExpertSpec(
        run_dir=run, student=model,
        teacher=from_mapping(ModelConfig, teacher, "teacher") if teacher else None,
        data=from_mapping(DataConfig, config["data"], "data") if "data" in config else None,
        seed=int(config.get("train", {}).get("seed", 0)), classes=list(inputs["classes"]),
        input_shape=(shape[0], shape[1], shape[2]), mean=list(inputs.get("mean", [0.0])),
        std=list(inputs.get("std", [1.0])), resize=inputs.get("resize"),
        fingerprint=config_hash(config.get("fingerprints", config)))


class NormalizedExpert(nn.Module):
    """A classifier behind its input normalisation: (B, C, H, W) images in [0, 1] -> logits."""

    mean: Tensor
    std: Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.model((images - self.mean) / self.std)


def build_expert(spec: ExpertSpec) -> NormalizedExpert:
    """The run's student with its best weights, in eval mode, behind its normalisation."""
    student = build_model(replace(spec.student, weights=str(spec.weights), pretrained=False),
                          len(spec.classes), spec.input_shape[0])
    return NormalizedExpert(student, spec.mean, spec.std).eval()


def to_unit_range(images: Tensor, spec: ExpertSpec) -> Tensor:
    """Normalised dataset images back to values in [0, 1]."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return images * std + mean


def sample_images(spec: ExpertSpec, split: str, count: int) -> tuple[Tensor, Tensor] | None:
    """Up to ``count`` images in [0, 1] and their subtask labels from the run's ``train`` or
    ``test`` split (None when the run's data cannot be loaded here)."""
    if spec.data is None:
        return None
    try:
        splits = load_task_data(spec.data, spec.seed).splits
    except SubdistillError:
        return None
    data = splits.train if split == "train" else splits.test
    picked = range(min(count, len(data)))
    images = torch.stack([data[i][0] for i in picked])
    labels = torch.tensor([data[i][1] for i in picked])
    return to_unit_range(images, spec), labels
