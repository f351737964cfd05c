"""``subdistill explain``: heatmaps of a teacher and its students on the same test images,
agreement metrics per image (CSV), a summary per model (Markdown) and a figure per method."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..atomic import write_csv, write_text
from ..config import DataConfig, ModelConfig, read_yaml, to_dict
from ..errors import ConfigError
from ..jobs import TaskData, build_model, load_task_data
from ..models.restricted import restrict_teacher
from ..modes import eval_mode
from ..plugins import import_object
from ..results import final_run_dirs, subtask_label
from ..training.run_files import BEST_WEIGHTS
from ..training.trainer import seed_everything
from .analysis import TEACHER, agreement_rows, heatmaps_for, paired_differences, summarize
from .figure import heatmap_grid

SUMMARY_METRICS = ("pearson", "cosine", "auc_own_order", "auc_teacher_order")


@dataclass
class ExplainConfig:
    """Teacher, student architecture, the students to compare (label -> weights file or run
    directory), data/subtask, attribution methods and how many test images. When a student
    is labelled ``reference``, the summary adds its paired differences to every other student.

    ``bench`` names a benchmark's ``out_dir``: its finished final runs at ``data.subtask``,
    ``data.rho`` and ``bench_seed`` are added as students, labelled by method. ``canonizer``
    gives LRP the user's own zennit canonizer of the ``teacher`` and/or the ``student``
    architecture as an import path ``module:attribute`` (see
    :func:`subdistill.explain.canonizers.canonizers_for`); the others get the built-in one."""

    teacher: ModelConfig
    student: ModelConfig
    students: dict[str, str] = field(default_factory=dict)
    bench: str = ""
    bench_seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    attributions: list[str] = field(default_factory=lambda: ["lrp", "ig"])
    images: int = 16
    top_k: int = 5
    seed: int = 0
    reference: str = "subdistill"
    canonizer: dict[str, str] = field(default_factory=dict)
    out_dir: str = "runs/explain"
    imports: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.students and not self.bench:
            raise ConfigError("students: give at least one label: weights file or run directory "
                              "(or a bench out_dir as `bench`)")
        if TEACHER in self.students:
            raise ConfigError(f"students: {TEACHER!r} is reserved for the teacher")
        if self.images < 1:
            raise ConfigError(f"images must be at least 1, got {self.images}")
        unknown = sorted(set(self.canonizer) - {TEACHER, "student"})
        if unknown:
            raise ConfigError(f"canonizer: the keys are {TEACHER} and student, got {unknown}")


def _weights(path: str) -> str:
    candidate = Path(path)
    return str(candidate / BEST_WEIGHTS) if candidate.is_dir() else path


def check_bench_models(config: ExplainConfig) -> None:
    """Refuse a ``bench`` whose teacher or student differ from the config's: its students
    would not load into the config's architecture, or would be compared to another teacher."""
    recorded = read_yaml(Path(config.bench) / "bench.yaml")
    for role in ("teacher", "student"):
        mine, theirs = to_dict(getattr(config, role)), recorded.get(role, {})
        for key in ("name", "args", "weights"):
            if mine.get(key) != theirs.get(key):
                raise ConfigError(f"{role}.{key} is {mine.get(key)!r} here but "
                                  f"{theirs.get(key)!r} in the bench {config.bench}; use the "
                                  "bench config's models")


def explained_models(config: ExplainConfig, data: TaskData) -> dict[str, nn.Module]:
    """The teacher (restricted to the subtask) and every student of ``config``, by label."""
    channels = data.train_full.image_shape[0]
    seed_everything(config.seed)
    models: dict[str, nn.Module] = {TEACHER: restrict_teacher(
        build_model(config.teacher, len(data.train_full.classes), channels), data.subtask)}
    students = dict(config.students)
    if config.bench:
        check_bench_models(config)
        runs = final_run_dirs(config.bench, subtask_label(config.data.subtask), config.data.rho,
                              config.bench_seed)
        students.update({method: str(path) for method, path in runs.items()})
    for label, path in students.items():
        models[label] = build_model(replace(config.student, weights=_weights(path)),
                                    len(data.subtask), channels)
    return models


def model_canonizers(config: ExplainConfig, labels: Iterable[str]) -> dict[str, str]:
    """The user's LRP canonizer (import path) of each model label that ``config`` gives one."""
    roles = {label: TEACHER if label == TEACHER else "student" for label in labels}
    return {label: config.canonizer[role] for label, role in roles.items()
            if role in config.canonizer}


def check_explain(config: ExplainConfig) -> str:
    """Validate an explain config without explaining: the data, the attribution methods, the
    teacher and every student's weights. Returns a report."""
    from .attribution import ATTRIBUTIONS  # zennit and captum

    data = load_task_data(config.data, config.seed)
    for name in config.attributions:
        ATTRIBUTIONS.get(name)
    for path in config.canonizer.values():
        import_object(path, ConfigError)
    models = explained_models(config, data)
    return (f"subtask {data.subtask.name}: {', '.join(data.subtask.names)}; "
            f"{min(config.images, len(data.splits.test))} test images\n"
            f"models: {', '.join(models)}\nattributions: {', '.join(config.attributions)}")


def run_explain(config: ExplainConfig) -> list[dict[str, Any]]:
    """Explain the teacher and every student on the same seeded test images; write
    ``per_image.csv``, ``summary.md`` and ``heatmaps_<method>.png`` into ``out_dir``."""
    data = load_task_data(config.data, config.seed)
    test = data.splits.test
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(config.seed))
    picked = order[: config.images].tolist()
    images = torch.stack([test[i][0] for i in picked])
    labels = torch.tensor([test[i][1] for i in picked])
    models = explained_models(config, data)
    out = Path(config.out_dir)
    rows = []
    for method in config.attributions:
        maps = heatmaps_for(models, images, labels, method, test.mean, test.std,
                            canonizers=model_canonizers(config, models))
        rows += agreement_rows(models, maps, images, labels, method, top_k=config.top_k)
        heatmap_grid(out / f"heatmaps_{method}.png", images, maps, test.mean, test.std,
                     title=f"{method}: {data.subtask.name}",
                     truths=[data.subtask.names[int(y)] for y in labels],
                     captions=grid_captions(models, images, rows, method, data.subtask.names))
    write_csv(out / "per_image.csv", rows)
    summary = summarize(rows)
    text = format_summary(summary, len(picked))
    if config.reference in models:
        text += "\n" + format_paired(paired_differences(rows, config.reference), config.reference)
    write_text(out / "summary.md", text)
    return summary


@torch.no_grad()
def grid_captions(models: Mapping[str, nn.Module], images: Tensor, rows: Sequence[Mapping[str, Any]],
                  method: str, names: Sequence[str]) -> dict[str, list[str]]:
    """Per model, a caption per image: its prediction and, for a student, the Pearson
    correlation of its heatmap with the teacher's (``rows``: :func:`agreement_rows`)."""
    agreement = {(r["model"], int(r["image"])): r["pearson"] for r in rows
                 if r["attribution"] == method}
    captions = {}
    for name, model in models.items():
        with eval_mode(model):
            predicted = model(images).argmax(dim=-1).tolist()
        captions[name] = [f"pred: {names[p]}" + ("" if name == TEACHER else
                                                 f", r {agreement[(name, i)]:.2f}")
                          for i, p in enumerate(predicted)]
    return captions


def format_paired(table: list[dict[str, Any]], reference: str) -> str:
    """Markdown table of :func:`paired_differences` on the Pearson correlation."""
    lines = [f"Paired differences of the heatmap correlation with the teacher: r of {reference} "
             "minus r of the other student on the same image, mean ± standard error over the "
             "images.", "", "| attribution | model | Δr | images |", "|---|---|---:|---:|"]
    lines += [f"| {e['attribution']} | {e['model']} | {e['mean']:+.3f} ± {e['se']:.3f} | {e['n']} |"
              for e in table]
    return "\n".join(lines) + "\n"


def format_summary(summary: list[dict[str, Any]], images: int) -> str:
    """Markdown table: per attribution method and model, mean ± std of the agreement metrics."""
    lines = [f"Agreement with the teacher on {images} test images (mean ± std). Flipping AUC: "
             "mean logit gap along the patch-flipping curve divided by the model's mean initial "
             "gap, over its correctly classified images; lower = the order finds the evidence "
             "faster. `auc_teacher_order` flips the model's input in the teacher's order.", "",
             "| attribution | model | " + " | ".join(SUMMARY_METRICS) + " |",
             "|---|---|" + "---:|" * len(SUMMARY_METRICS)]
    for entry in summary:
        cells = [("nan" if math.isnan(entry[m]) else f"{entry[m]:.3f} ± {entry[m + '_std']:.3f}")
                 for m in SUMMARY_METRICS]
        lines.append(f"| {entry['attribution']} | {entry['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
