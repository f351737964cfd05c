"""Benchmark of the default loss weights: each layer-wise method at its default settings
(``calibration: gradient``, λ = 1) against a sweep of raw weights (``calibration: none``,
λ ∈ {0.1, 1, 10, 100, 1000}), next to KD and the label-only student.

Setting: the digits demo (its teacher, student, subtask *confusable*, 40 epochs, pairs
layer1/2/3), on two teachers with the same predictions: the demo's teacher, and the same
network with ``layer2``'s output multiplied by 100 and ``layer3``'s input divided by 100
(its layer scales now differ by 100x). A method whose default needs no tuning is within about
one point of the best raw λ on both teachers.

Every run is a row of the CSV ledger (``--out``); finished rows are skipped on a rerun, so the
sweep can be resumed or split (``--teachers``, ``--methods``). The table is printed and
written next to the ledger (``.md``)::

    python benchmarks/lambda_sweep.py --out benchmarks/results/lambda_sweep.csv
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.atomic import write_csv  # noqa: E402
from subdistill.data import (  # noqa: E402
    Subtask,  # noqa: E402
    load_dataset,
    make_splits,
)
from subdistill.demo import SETTINGS  # noqa: E402
from subdistill.jobs import train_classifier  # noqa: E402
from subdistill.models import create_model, load_weights  # noqa: E402
from subdistill.models.restricted import restrict_teacher  # noqa: E402
from subdistill.training import TrainConfig, distill, seed_everything  # noqa: E402
from subspace_fit import RESULTS, machine_info  # noqa: E402

LAYERWISE = ("subdistill", "fitnet", "vid", "at")
BASELINES = ("kd", "student-only")
SWEEP = (0.1, 1.0, 10.0, 100.0, 1000.0)
COLUMNS = ["teacher", "method", "setting", "seed", "test_accuracy", "best_val_accuracy",
           "layer_weights", "seconds"]


class Scaled(nn.Module):
    """``factor · module(x)``, or ``module(factor · x)`` with ``inputs=True``."""

    def __init__(self, module: nn.Module, factor: float, inputs: bool = False):
        super().__init__()
        self.module, self.factor, self.inputs = module, factor, inputs

    def forward(self, x: Tensor) -> Tensor:
        return self.module(self.factor * x) if self.inputs else self.factor * self.module(x)


def rescaled(teacher: nn.Module, layer: str, following: str, factor: float) -> nn.Module:
    """A copy of ``teacher`` whose ``layer`` outputs ``factor`` times more and whose
    ``following`` layer divides its input by ``factor``: the same predictions, another scale."""
    model = copy.deepcopy(teacher)
    setattr(model, layer, Scaled(getattr(model, layer), factor))
    setattr(model, following, Scaled(getattr(model, following), 1 / factor, inputs=True))
    return model


def demo_teacher(weights: Path, train_full, test_full) -> nn.Module:
    """The digits demo's teacher (trained here as ``subdistill demo`` does when ``weights``
    does not exist yet)."""
    setting = SETTINGS["digits"]
    seed_everything(0)
    teacher = create_model("cifar_resnet", len(train_full.classes), train_full.image_shape[0],
                           **setting.teacher_args)
    if weights.is_file():
        load_weights(teacher, weights)
        return teacher
    config = TrainConfig(epochs=setting.teacher_epochs, batch_size=setting.batch_size,
                         lr=setting.lr, augment=setting.augment, schedule="cosine", seed=0,
                         progress=False)
    return train_classifier(teacher, train_full, test_full, config,
                            run_dir=weights.parent).student


def settings_of(method: str, sweep: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    """The runs of one method: its defaults and, for a layer-wise one, the raw-λ sweep."""
    runs: dict[str, dict[str, Any]] = {"default": {}}
    if method in LAYERWISE:
        runs.update({f"lambda={lam:g}": {"lambda": lam, "calibration": "none"} for lam in sweep})
    return runs


def read_ledger(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def summarise(rows: list[dict[str, str]]) -> str:
    """Markdown: per teacher and layer-wise method, the default's mean test accuracy, the
    best λ of the sweep and its mean, and KD's and the label-only student's means."""
    def mean(teacher: str, method: str, setting: str) -> float | None:
        values = [float(r["test_accuracy"]) for r in rows if (r["teacher"], r["method"],
                  r["setting"]) == (teacher, method, setting)]
        return statistics.fmean(values) if values else None

    def seeds(teacher: str) -> int:
        return len({r["seed"] for r in rows if r["teacher"] == teacher})

    lines = ["| teacher | method | default (calibrated, λ = 1) | best raw λ | its accuracy | "
             "default − best | default − kd | every raw λ |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for teacher in sorted({r["teacher"] for r in rows}):
        kd = mean(teacher, "kd", "default")
        for method in LAYERWISE:
            default = mean(teacher, method, "default")
            sweep = {s: mean(teacher, method, s) for s in {r["setting"] for r in rows
                     if (r["teacher"], r["method"]) == (teacher, method) and r["setting"] != "default"}}
            sweep = {s: v for s, v in sweep.items() if v is not None}
            if default is None or not sweep:
                continue
            best = max(sweep, key=lambda s: (sweep[s], -float(s.split("=")[1])))
            every = ", ".join(f"{s.split('=')[1]}: {v:.4f}" for s, v in
                              sorted(sweep.items(), key=lambda kv: float(kv[0].split("=")[1])))
            lines.append(f"| {teacher} | {method} | {default:.4f} | {best.split('=')[1]} | "
                         f"{sweep[best]:.4f} | {100 * (default - sweep[best]):+.1f} pt | "
                         f"{'' if kd is None else f'{100 * (default - kd):+.1f} pt'} | {every} |")
        for method in BASELINES:
            value = mean(teacher, method, "default")
            if value is not None:
                lines.append(f"| {teacher} | {method} | {value:.4f} |  |  |  |  |  |")
        lines.append(f"| {teacher} | (seeds) | {seeds(teacher)} |  |  |  |  |  |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(RESULTS / "lambda_sweep.csv"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--teacher-weights", default="runs/demo/teacher/model_best.safetensors")
    parser.add_argument("--teachers", default="demo,rescaled")
    parser.add_argument("--methods", default=",".join(LAYERWISE + BASELINES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sweep", default=",".join(f"{v:g}" for v in SWEEP))
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's 40")
    parser.add_argument("--rho", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = SETTINGS["digits"]
    out = Path(args.out)
    train_full = load_dataset("digits", "train", args.data_root)
    test_full = load_dataset("digits", "test", args.data_root)
    subtask = Subtask.resolve(setting.subtask, train_full.classes, train_full.family)
    base = demo_teacher(Path(args.teacher_weights), train_full, test_full)
    teachers = {"demo": base, "rescaled": rescaled(base, "layer2", "layer3", 100.0)}
    sweep = tuple(float(v) for v in args.sweep.split(","))
    ledger: list[dict[str, Any]] = read_ledger(out)
    done = {(r["teacher"], r["method"], r["setting"], r["seed"]) for r in ledger}
    for name in args.teachers.split(","):
        teacher = restrict_teacher(teachers[name], subtask)
        for seed in (int(s) for s in args.seeds.split(",")):
            splits = make_splits(train_full, test_full, subtask, rho=args.rho, seed=seed)
            for method in args.methods.split(","):
                for label, options in settings_of(method, sweep).items():
                    if (name, method, label, str(seed)) in done:
                        continue
                    seed_everything(seed)
                    student = create_model("cifar_resnet", len(subtask),
                                           train_full.image_shape[0], **setting.student_args)
                    config = TrainConfig(epochs=args.epochs or setting.student_epochs,
                                         batch_size=setting.batch_size, lr=setting.lr,
                                         augment=setting.augment, schedule="cosine", seed=seed,
                                         progress=False)
                    started = time.perf_counter()
                    result = distill(teacher, student, splits.train, splits.val,
                                     test=splits.test, method=method, pairs=setting.pairs,
                                     options=options, config=config)
                    weights = getattr(result.method, "named_weights", dict)()
                    ledger.append({"teacher": name, "method": method, "setting": label,
                                   "seed": seed, "test_accuracy": result.test_accuracy,
                                   "best_val_accuracy": result.best_val_accuracy,
                                   "layer_weights": json.dumps(weights),
                                   "seconds": round(time.perf_counter() - started, 2)})
                    write_csv(out, ledger, COLUMNS)  # atomically, after every run
                    print(f"{name} {method} {label} seed {seed}: {result.test_accuracy:.4f}",
                          flush=True)
    table = summarise(read_ledger(out))
    machine = machine_info()
    header = (f"lambda sweep, digits/{setting.subtask}, rho {args.rho:g}; "
              f"{machine['platform']}, torch {machine['torch']}, {machine['date']}")
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n")
    print(f"\n{header}\n\n{table}")
    return table


if __name__ == "__main__":
    main()
