"""``subdistill demo``: train a teacher on all classes, distil a subtask, print a table.

Runs offline: the default dataset (scikit-learn's handwritten digits) ships with a pip
dependency; CIFAR-10 and Fashion-MNIST are read from a local data root (torchvision's files,
fetched there with ``download=True``, or the offline ``cifar10-jpeg`` copy).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .atomic import write_csv, write_text
from .config import DataConfig, DistillConfig, ModelConfig, TeacherConfig, to_dict
from .data import Subtask, make_splits
from .errors import ConfigError
from .jobs import load_full_data, train_classifier
from .models import count_parameters, create_model
from .models.restricted import restrict_teacher
from .plots import bar_chart
from .training.config import TrainConfig, check_device
from .training.evaluate import accuracy
from .training.trainer import distill, seed_everything

DEMO_METHODS = ("subdistill", "kd", "student-only")


@dataclass(frozen=True)
class DemoSetting:
    """Models, subtask and schedules of the demo on one dataset."""

    subtask: str
    teacher_args: dict[str, Any]
    student_args: dict[str, Any]
    pairs: dict[str, str]
    augment: str
    teacher_epochs: int
    student_epochs: int
    lr: float = 2e-3
    batch_size: int = 32
    rho: float = 0.8


RESNET_PAIRS = {"layer1": "layer1", "layer2": "layer2", "layer3": "layer3"}
CIFAR10_SETTING = DemoSetting(
    subtask="vehicles", teacher_args={"depth": 8, "widths": [16, 32, 64]},
    student_args={"depth": 8, "widths": [8, 16, 32]}, pairs=RESNET_PAIRS, augment="crop-flip",
    teacher_epochs=5, student_epochs=5, batch_size=64)
SETTINGS = {  # by dataset name
    "digits": DemoSetting(
        subtask="confusable", teacher_args={"depth": 8, "widths": [32, 64, 128]},
        student_args={"depth": 8, "widths": [8, 16, 32]}, pairs=RESNET_PAIRS, augment="crop",
        teacher_epochs=30, student_epochs=40),
    "cifar10": CIFAR10_SETTING,
    "cifar10-jpeg": CIFAR10_SETTING,
    "fashion-mnist": DemoSetting(
        subtask="footwear", teacher_args={"depth": 8, "widths": [32, 64, 128]},
        student_args={"depth": 8, "widths": [8, 16, 32]}, pairs=RESNET_PAIRS, augment="crop",
        teacher_epochs=4, student_epochs=6, batch_size=64),
}


def _scaled(epochs: int, scale: float) -> int:
    return max(1, round(epochs * scale))


def run_demo(dataset: str = "digits", data_root: str | None = None, out_dir: str | Path = "runs/demo",
             epochs_scale: float = 1.0, methods: Sequence[str] = DEMO_METHODS,
             seeds: Sequence[int] = (0,), rho: float | None = None,
             progress: bool = True, download: bool = False,
             device: str = "cpu") -> list[dict[str, Any]]:
    """Train a teacher on every class (seed ``seeds[0]``), distil the demo subtask with each of
    ``methods`` and each seed (its own split and initialisation), print the table (mean ± std
    over seeds) and write ``results.csv``, ``results.md`` and ``results.png`` into ``out_dir``
    (the demo's own sub-folders there are replaced). ``dataset``: one of :data:`SETTINGS`
    (``download``: fetch a torchvision dataset into ``data_root``), training on ``device``.
    Returns the table rows."""
    if dataset not in SETTINGS:
        raise ConfigError(f"the demo has no dataset {dataset!r}; use one of "
                          f"{', '.join(SETTINGS)}")
    check_device(device)
    setting = SETTINGS[dataset]
    rho = setting.rho if rho is None else rho
    out = Path(out_dir)
    started = time.perf_counter()
    # every input is checked before anything is written: data, subtask, splits, schedules
    data = DataConfig(dataset, data_root, download, subtask=setting.subtask, rho=rho)
    train_full, test_full = load_full_data(data)
    channels = train_full.image_shape[0]
    subtask = Subtask.resolve(setting.subtask, train_full.classes, train_full.family)
    split_of = {seed: make_splits(train_full, test_full, subtask, rho=rho, seed=seed)
                for seed in seeds}
    if not epochs_scale > 0:
        raise ConfigError(f"--epochs-scale must be positive, got {epochs_scale}")

    def schedule(epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(epochs=_scaled(epochs, epochs_scale), batch_size=setting.batch_size,
                           lr=setting.lr, augment=setting.augment, schedule="cosine", seed=seed,
                           progress=progress, device=device)

    seed_everything(seeds[0])
    teacher = create_model("cifar_resnet", len(train_full.classes), channels, **setting.teacher_args)
    teacher_model = ModelConfig("cifar_resnet", dict(setting.teacher_args),
                                str(out / "teacher" / "model_best.safetensors"))
    teacher_config = TeacherConfig(replace(teacher_model, weights=None), data,
                                   schedule(setting.teacher_epochs, seeds[0]), str(out / "teacher"))
    taught = train_classifier(teacher, train_full, test_full,  # a rerun replaces the demo's runs
                              teacher_config.train, run_dir=teacher_config.run_dir,
                              record=to_dict(teacher_config), overwrite=True)
    restricted = restrict_teacher(taught.student, subtask)
    teacher_params = count_parameters(teacher)
    assert taught.test_accuracy is not None, "the teacher was scored on the test split"
    rows = [_row("teacher (all classes)", "-", teacher_params, [taught.test_accuracy]),
            _row(f"teacher on {subtask.name}", "-", teacher_params,
                 [accuracy(restricted, split_of[seeds[0]].test, device)])]
    for method in methods:
        scores: list[float] = []
        for seed in seeds:
            seed_everything(seed)
            student = create_model("cifar_resnet", len(subtask), channels, **setting.student_args)
            splits = split_of[seed]
            run_dir = out / method / f"seed{seed}" if len(seeds) > 1 else out / method
            record = DistillConfig(  # the run as a config: `subdistill export` rebuilds from it
                teacher_model, ModelConfig("cifar_resnet", dict(setting.student_args)), data,
                {"name": method}, dict(setting.pairs), schedule(setting.student_epochs, seed),
                str(run_dir))
            result = distill(restricted, student, splits.train, splits.val, method=method,
                             pairs=setting.pairs, test=splits.test, run_dir=run_dir,
                             config=record.train, record=to_dict(record), overwrite=True)
            assert result.test_accuracy is not None, "the student was scored on the test split"
            scores.append(result.test_accuracy)
        rows.append(_row("student", method, count_parameters(student), scores))
    seconds = time.perf_counter() - started
    header = (f"dataset {dataset}, subtask {subtask.name} = {', '.join(subtask.names)}; "
              f"rho {rho}, {len(split_of[seeds[0]].train)} training images; "
              f"seeds {', '.join(map(str, seeds))}; {seconds:.0f} s")
    _write_outputs(out, rows, header, f"{dataset} / {subtask.name}")
    return rows


def _row(model: str, method: str, parameters: int, scores: Sequence[float]) -> dict[str, Any]:
    return {"model": model, "method": method, "parameters": parameters,
            "test_accuracy": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "runs": len(scores)}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The demo table as Markdown (mean ± std over seeds where there are several)."""
    lines = ["| model | method | parameters | test accuracy |", "|---|---|---:|---:|"]
    for r in rows:
        spread = f" ± {r['std']:.4f}" if r["runs"] > 1 else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['parameters']:,} | "
                     f"{r['test_accuracy']:.4f}{spread} |")
    return "\n".join(lines)


def _write_outputs(out: Path, rows: list[dict[str, Any]], header: str, title: str) -> None:
    table = format_table(rows)
    print(f"\n{header}\n\n{table}\n")
    write_text(out / "results.md", f"{header}\n\n{table}\n")
    write_csv(out / "results.csv", rows)
    labels = [r["model"] if r["method"] == "-" else r["method"] for r in rows]
    bar_chart(out / "results.png", labels, [r["test_accuracy"] for r in rows],
              errors=[r["std"] for r in rows], title=title, ylabel="test accuracy")
    print(f"results written to {out}/results.md, results.csv, results.png")
