"""Benchmark of a SubDistill run's pre-training cost: the subspace fit and the teacher-output
cache from one teacher pass, against building the cache alone.

Approaches, each on N random 3x32x32 images and a randomly initialised teacher (the cost does
not depend on the values), the benchmark's settings (cache of the original images plus
``copies - 1`` crop-flip copies, batch 500, bf16 autocast):

* ``cache``: ``TeacherCache.build`` alone (what every cached run of another method pays);
* ``one_pass``: ``TeacherCache.build`` feeding the fit (``statistics=``; the forward over the
  original images also gives the fit its activations, the backward from the logit margin stops
  at the shallowest tapped layer), then the bases solved;
* ``two_passes``: the fit's own pass as it ran before (float32, backward down to the input),
  then the cache: what a run paid before the one-pass build.

CPU time (``time.process_time``) and wall time; the approaches are interleaved over the
repeats and the medians compared.

    python benchmarks/pretraining.py --threads 1 --out benchmarks/results/pretraining.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.data.augment import build_augment  # noqa: E402
from subdistill.models import create_model  # noqa: E402
from subdistill.subspace.fit import SubspaceStatistics, solve_bases  # noqa: E402
from subdistill.training.teacher_cache import TeacherCache  # noqa: E402
from subspace_fit import RESULTS, machine_info, report  # noqa: E402

TEACHERS = {
    # name -> (registry name, arguments, {teacher layer: k})
    "resnet18-half": ("cifar_resnet", {"blocks_per_stage": (2, 2, 2, 2),
                                       "widths": (32, 64, 128, 256)},
                      {"layer3": 32, "layer4": 64}),
    "fast_cnn": ("fast_cnn", {"widths": (128, 384, 384)}, {"layer2": 32, "layer3": 64}),
}
APPROACHES = ("cache", "one_pass", "two_passes")
CLASSES = 4


class InputGradients:
    """The fit's loader as it was before the one-pass build: inputs that require gradients, so
    that the backward runs down to the input."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __iter__(self):
        for x, y in self.loader:
            yield x.requires_grad_(True), y


def run(approach: str, teacher, train, layers: dict[str, int], root: Path, copies: int,
        batch_size: int, precision: str) -> None:
    """One approach, end to end (cache written under ``root``, bases solved where fitted)."""
    augment = build_augment("crop-flip", 32)
    stats = SubspaceStatistics(layers, positions=20)
    build = dict(copies=copies, augment=augment, augment_name="crop-flip", precision=precision,
                 batch_size=batch_size)
    if approach == "cache":
        TeacherCache.build(root, teacher, train, list(layers), **build)
        return
    if approach == "one_pass":
        cache = TeacherCache.build(root, teacher, train, list(layers), statistics=stats, **build)
        assert cache.fed_statistics
    else:
        stats.feed(teacher, InputGradients(DataLoader(train, batch_size=batch_size)))
        TeacherCache.build(root, teacher, train, list(layers), **build)
    solve_bases(stats.result(), layers)


def main(*, teacher: str = "resnet18-half", images: int = 4000, copies: int = 2,
         repeats: int = 3, batch_size: int = 500, precision: str = "bf16",
         threads: int | None = None, out: str | Path | None = None,
         verbose: bool = True) -> dict:
    if threads:
        torch.set_num_threads(threads)
    name, arguments, layers = TEACHERS[teacher]
    torch.manual_seed(0)
    model = create_model(name, CLASSES, **arguments).eval()
    generator = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(images, 3, 32, 32, generator=generator),
                          torch.arange(images) % CLASSES)
    timings: dict[str, list[tuple[float, float]]] = {a: [] for a in APPROACHES}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            for approach in APPROACHES:  # interleaved: drifts in the machine's load are shared
                wall, cpu = time.perf_counter(), time.process_time()
                run(approach, model, train, layers, Path(folder) / f"{approach}{repeat}",
                    copies, batch_size, precision)
                timings[approach].append((time.perf_counter() - wall, time.process_time() - cpu))
    medians = {a: {"wall_s": statistics.median(w for w, _ in t),
                   "cpu_s": statistics.median(c for _, c in t)} for a, t in timings.items()}
    result = {"benchmark": "pretraining", "machine": machine_info(),
              "setting": {"teacher": teacher, "model": name, "arguments": arguments,
                          "layers": layers, "images": images, "copies": copies,
                          "repeats": repeats, "batch_size": batch_size, "precision": precision,
                          "inputs": "random N(0,1) 3x32x32, random teacher weights (seed 0)"},
              "timings": {a: [{"wall_s": w, "cpu_s": c} for w, c in t]
                          for a, t in timings.items()},
              "summary": [{"approach": a, **m,
                           "cpu_vs_cache": m["cpu_s"] / medians["cache"]["cpu_s"]}
                          for a, m in medians.items()]}
    return report(result, out, verbose, format_table)


def format_table(result: dict) -> str:
    s = result["setting"]
    lines = [f"teacher {s['teacher']}, layers {', '.join(s['layers'])}, {s['images']} images, "
             f"{s['copies']} copies, {s['precision']}, medians of {s['repeats']}", "",
             "| approach | CPU s | wall s | CPU time / cache alone |", "|---|---:|---:|---:|"]
    for row in result["summary"]:
        lines.append(f"| {row['approach']} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | "
                     f"{row['cpu_vs_cache']:.2f}x |")
    return "\n".join(lines)


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", choices=sorted(TEACHERS), default="resnet18-half")
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    out = args.out or str(RESULTS / f"pretraining-{args.teacher}.json")
    main(teacher=args.teacher, images=args.images, copies=args.copies, repeats=args.repeats,
         batch_size=args.batch_size, precision=args.precision, threads=args.threads, out=out)
