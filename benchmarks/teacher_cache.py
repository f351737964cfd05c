"""Benchmark of teacher-output caching: epoch time of ``distill`` with and without the cache.

The setting is the CPU benchmark's (configs/bench-cifar10.yaml): a 4-stage CIFAR ResNet-10
teacher (widths 32-256), a quarter-width student (8-64), pairs layer3/layer4, batch 128,
crop-flip augmentation; with the cache, the original images plus one augmented copy each.
Images are random 32x32 tensors (timing does not depend on the pixels or on the weights). Each
method trains ``epochs`` epochs twice through ``distill``, once live (the teacher runs every
step) and once from the cache; the figure is the median epoch time (training pass plus
validation, as logged in ``metrics.jsonl``), and the one-time cost of building the cache is
reported separately.

    python benchmarks/teacher_cache.py --out benchmarks/results/teacher_cache.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.models import create_model  # noqa: E402
from subdistill.training import distill  # noqa: E402
from subdistill.training.teacher_cache import TeacherCache  # noqa: E402
from subspace_fit import RESULTS, machine_info, report  # noqa: E402

METHODS = ("kd", "fitnet", "subdistill")
TEACHER = {"blocks_per_stage": (1, 1, 1, 1), "widths": (32, 64, 128, 256)}
STUDENT = {"blocks_per_stage": (1, 1, 1, 1), "widths": (8, 16, 32, 64)}
PAIRS = {"layer3": "layer3", "layer4": "layer4"}
CLASSES = 4


def _data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=generator), torch.arange(n) % CLASSES)


def _epoch_seconds(method: str, train, val, cache: str, epochs: int, batch_size: int,
                   copies: int) -> list[float]:
    torch.manual_seed(0)
    teacher = create_model("cifar_resnet", CLASSES, **TEACHER)
    student = create_model("cifar_resnet", CLASSES, **STUDENT)
    result = distill(teacher, student, train, val, method=method, pairs=PAIRS, epochs=epochs,
                     batch_size=batch_size, lr=2e-3, schedule="cosine", augment="crop-flip",
                     teacher_cache=cache, cache_copies=copies if cache else 1,
                     eval_batch_size=500, progress=False)
    return [row["seconds"] for row in result.history]


def main(*, images: int = 4000, epochs: int = 3, batch_size: int = 128, copies: int = 2,
         methods=METHODS, threads: int | None = None, out: str | Path | None = None,
         verbose: bool = True) -> dict:
    if threads:
        torch.set_num_threads(threads)
    train, val = _data(images, 0), _data(max(images // 4, 1), 1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        teacher = create_model("cifar_resnet", CLASSES, **TEACHER)
        started = time.perf_counter()
        TeacherCache.build(Path(folder) / "probe", teacher, train, list(PAIRS), copies=copies)
        build_seconds = time.perf_counter() - started
        for method in methods:
            live = _epoch_seconds(method, train, val, "", epochs, batch_size, copies)
            cached = _epoch_seconds(method, train, val, str(Path(folder) / method), epochs,
                                    batch_size, copies)
            rows.append({"method": method, "live_epoch_s": statistics.median(live),
                         "cached_epoch_s": statistics.median(cached),
                         "speedup": statistics.median(live) / statistics.median(cached),
                         "live_epochs_s": live, "cached_epochs_s": cached})
    result = {"machine": machine_info(),
              "setting": {"images": images, "epochs": epochs, "batch_size": batch_size,
                          "copies": copies, "teacher": TEACHER, "student": STUDENT,
                          "pairs": PAIRS},
              "cache_build_s": build_seconds, "summary": rows}
    return report(result, out, verbose, format_table)


def format_table(result: dict) -> str:
    lines = [f"cache build (once, {result['setting']['copies']} copies of "
             f"{result['setting']['images']} images): {result['cache_build_s']:.1f} s", "",
             "| method | epoch s, live teacher | epoch s, cached teacher | speed-up |",
             "|---|---:|---:|---:|"]
    for row in result["summary"]:
        lines.append(f"| {row['method']} | {row['live_epoch_s']:.2f} | "
                     f"{row['cached_epoch_s']:.2f} | {row['speedup']:.2f}x |")
    return "\n".join(lines)


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "teacher_cache.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    main(images=args.images, epochs=args.epochs, batch_size=args.batch_size, copies=args.copies,
         methods=args.methods.split(","), threads=args.threads, out=args.out)
