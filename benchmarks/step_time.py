"""Benchmark of Step 2: time of one training step of ``subdistill``, ``kd`` and ``fitnet``.

Every method is built through the project's own code path (``setup_method``: output and pair
checks, ``build_method``, ``prepare`` -- for SubDistill the streaming subspace fit), with its own
copy of the same initial student and its own AdamW optimiser. A step is one call of the
trainer's ``train_epoch`` on a one-batch list, with the teacher frozen and the layer taps
entered exactly as ``distill`` does: frozen teacher forward, student forward and backward, all
loss terms, optimiser step (and ``train_epoch``'s bookkeeping).

To spread the load of other jobs on the machine evenly, the methods run in interleaved blocks
(``rounds`` x ``steps_per_round`` timed steps each, ``warmup`` untimed steps before every
block); the figure is the median over all timed steps. ``kd+taps`` is KD with the same layer
taps (forward hooks and clones) as the layer-wise methods, to separate the cost of the taps.
A component breakdown of SubDistill's heads (orthogonal parametrisation, einsums,
normalisation, loss) is timed in isolation on the step's real feature maps, and a
``torch.profiler`` table of the SubDistill step lists the top operators.

    python benchmarks/step_time.py --out benchmarks/results/step_time.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.losses import subspace_loss  # noqa: E402
from subdistill.models import create_model  # noqa: E402
from subdistill.modes import frozen  # noqa: E402
from subdistill.taps import LayerTaps, align, as_grid  # noqa: E402
from subdistill.training.config import TrainConfig  # noqa: E402
from subdistill.training.epoch import StudentStep, train_epoch  # noqa: E402
from subdistill.training.optim import build_optimizer  # noqa: E402
from subdistill.training.setup import setup_method  # noqa: E402
from subspace_fit import RESULTS, machine_info, report  # noqa: E402

METHODS = ("kd", "kd+taps", "subdistill", "fitnet")
TEACHERS = {
    "resnet8x4": ("resnet8x4", {}),
    "resnet32x4": ("resnet32x4", {}),
    "resnet20x4": ("cifar_resnet", {"depth": 20, "widths": (64, 128, 256)}),
    "resnet20": ("cifar_resnet20", {}),
    # the CIFAR-10 benchmark's pair (configs/bench-cifar10.yaml)
    "bench-resnet18": ("cifar_resnet", {"blocks_per_stage": (2, 2, 2, 2),
                                        "widths": (32, 64, 128, 256)}),
}
STUDENTS = {
    "resnet8": ("cifar_resnet", {"depth": 8, "widths": (16, 32, 64)}),
    "mobile": ("mobile_student", {}),
    "bench-resnet10": ("cifar_resnet", {"blocks_per_stage": (1, 1, 1, 1),
                                        "widths": (8, 16, 32, 64)}),
}
STUDENT_LAYERS = {"resnet8": ("layer1", "layer2", "layer3"),
                  "mobile": ("stages.1", "stages.3", "stages.5"),
                  "bench-resnet10": ("layer3", "layer4")}
TEACHER_LAYERS = {"bench-resnet18": ("layer3", "layer4")}  # others: layer1..3
NUM_CLASSES = 10


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


class Runner:
    """One method's student, optimiser, taps and the function running one step."""

    def __init__(self, label, teacher, student, train, pairs, batch, fit_images, options=None):
        method = "kd" if label == "kd+taps" else label
        self.label, self.teacher, self.student, self.batch = label, teacher, student, batch
        fit = TensorDataset(*[t[:fit_images] for t in train.tensors])
        started = time.perf_counter()
        self.algorithm = setup_method(teacher, student, fit, method=method, pairs=pairs,
                                      options=options,
                                      config=TrainConfig(progress=False, eval_batch_size=128))
        self.prepare_seconds = time.perf_counter() - started
        params = list(student.parameters()) + list(self.algorithm.parameters())
        self.optimizer = build_optimizer(params, "adamw", 1e-3, 0.0, 0.9)
        tapped = pairs if label != "kd" else {}
        self.pairs = [(t, s) for t, s in tapped.items()]

    def block(self, steps: int, warmup: int) -> list[float]:
        """Enter the taps as ``distill`` does, run ``warmup`` + ``steps`` steps, time the latter."""
        times = []
        with ExitStack() as stack:
            student_taps = stack.enter_context(
                LayerTaps(self.student, [s for _, s in self.pairs]))
            stack.enter_context(frozen(self.teacher))
            teacher_taps = stack.enter_context(
                LayerTaps(self.teacher, [t for t, _ in self.pairs]))
            cpu = torch.device("cpu")
            model = StudentStep(self.student, self.algorithm, student_taps, cpu, "fp32")
            for i in range(warmup + steps):
                started = time.perf_counter()
                train_epoch(model, self.teacher, teacher_taps, [self.batch], self.optimizer,
                             None, cpu, 0, TrainConfig())
                if i >= warmup:
                    times.append(time.perf_counter() - started)
        return times

    def profile(self, steps: int = 3, top: int = 20) -> list[dict]:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            self.block(steps, 0)
        rows = []
        for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total,
                        reverse=True)[:top]:
            rows.append({"op": e.key, "calls_per_step": e.count / steps,
                         "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                         "total_ms_per_step": e.cpu_time_total / 1000 / steps})
        return rows


def head_breakdown(runner: Runner, repeats: int = 30) -> dict:
    """SubDistill head costs per step (all pairs), forward + backward, timed in isolation."""
    algorithm, student, teacher = runner.algorithm, runner.student, runner.teacher
    x = runner.batch[0]
    with LayerTaps(student, [s for _, s in runner.pairs]) as s_taps, \
            LayerTaps(teacher, [t for t, _ in runner.pairs]) as t_taps, torch.no_grad():
        student(x)
        teacher(x)
        feats = [(as_grid(t_taps.outputs[t]).clone(), as_grid(s_taps.outputs[s]).clone())
                 for t, s in runner.pairs]
    heads = list(algorithm.heads)
    algorithm.train()
    shapes = []
    for (t_map, s_map) in feats:
        t_map, s_map = align(t_map, s_map)
        shapes.append({"teacher": list(t_map.shape), "student": list(s_map.shape)})

    def rotation():
        sum(h.rotation.weight.sum() for h in heads).backward()

    def normalisation():
        sum(h.norm(s.requires_grad_(True)).sum() for h, (_, s) in zip(heads, feats)).backward()

    def prediction_einsum():
        total = 0
        for h, (_, s) in zip(heads, feats):
            q = h.rotation.weight.detach().requires_grad_(True)
            total = total + torch.einsum("jk,bkhw->bjhw", q, s.requires_grad_(True)).sum()
        total.backward()

    def target_projection():  # teacher maps carry no gradient
        with torch.no_grad():
            for h, (t, _) in zip(heads, feats):
                h.target(align(t, t)[0])

    targets = [h.target(t).detach() for h, (t, _) in zip(heads, feats)]

    def loss():
        total = 0
        for h, tgt in zip(heads, targets):
            pred = tgt.clone().requires_grad_(True)
            total = total + subspace_loss(pred, tgt + 1, h.energy)
        total.backward()

    def whole_heads():
        total = sum(h(t, s.requires_grad_(True)) for h, (t, s) in zip(heads, feats))
        total.backward()

    parts = {"orthogonal parametrisation (Q = matrix_exp, fwd+bwd)": rotation,
             "channel normalisation (fwd+bwd)": normalisation,
             "prediction einsum Q·n(S) (fwd+bwd)": prediction_einsum,
             "target einsum U^T(T-mu) (fwd, no grad)": target_projection,
             "loss (fwd+bwd)": loss,
             "all heads together (fwd+bwd)": whole_heads}
    result = {}
    for name, fn in parts.items():
        for _ in range(3):
            fn()
        result[name] = _median_ms(fn, repeats)
    for h in heads:
        h.zero_grad(set_to_none=True)
    return {"ms_per_step": result, "shapes": shapes}


def main(*, teacher: str = "resnet8x4", student: str = "resnet8", batch_size: int = 64,
         methods=METHODS, rounds: int = 5, steps_per_round: int = 8, warmup: int = 2,
         fit_images: int = 256, threads: int | None = None, profile: bool = True,
         breakdown_repeats: int = 30, out: str | Path | None = None,
         verbose: bool = True) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_name, t_kwargs = TEACHERS[teacher]
    s_name, s_kwargs = STUDENTS[student]
    teacher_model = create_model(t_name, num_classes=NUM_CLASSES, **t_kwargs).eval()
    student_init = create_model(s_name, num_classes=NUM_CLASSES, **s_kwargs)
    teacher_layers = TEACHER_LAYERS.get(teacher, ("layer1", "layer2", "layer3"))
    if len(teacher_layers) != len(STUDENT_LAYERS[student]):
        raise SystemExit(f"teacher {teacher} and student {student} pair different numbers of "
                         "layers")
    pairs = dict(zip(teacher_layers, STUDENT_LAYERS[student]))
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(max(fit_images, batch_size), 3, 32, 32, generator=gen)
    labels = torch.arange(images.shape[0]) % NUM_CLASSES
    train = TensorDataset(images, labels)
    batch = (images[:batch_size], labels[:batch_size])

    runners = {}
    for label in methods:
        runners[label] = Runner(label, teacher_model, copy.deepcopy(student_init), train, pairs,
                                batch, fit_images)
    times = {label: [] for label in methods}
    for r in range(rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for label in order:
            times[label] += runners[label].block(steps_per_round, warmup + (3 if r == 0 else 0))
    summary = {}
    base = statistics.median(times["kd"]) if "kd" in times else None
    for label in methods:
        ms = [1000 * t for t in times[label]]
        med = statistics.median(ms)
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [med, med, med]
        summary[label] = {"ms_median": med, "ms_q1": q[0], "ms_q3": q[2], "steps": len(ms),
                          "ratio_to_kd": med / (1000 * base) if base else None,
                          "prepare_seconds": runners[label].prepare_seconds}
    result = {
        "benchmark": "step_time",
        "machine": machine_info(),
        "config": {"teacher": teacher, "student": student, "batch_size": batch_size,
                   "pairs": pairs, "methods": list(methods), "rounds": rounds,
                   "steps_per_round": steps_per_round, "warmup_per_block": warmup,
                   "fit_images": fit_images, "optimizer": "adamw lr 1e-3",
                   "step": "training.epoch.train_epoch on one batch, taps as in distill()",
                   "inputs": "random N(0,1) 3x32x32, random weights (seed 0)"},
        "summary": summary,
        "times_ms": {k: [round(1000 * t, 3) for t in v] for k, v in times.items()},
    }
    if "subdistill" in runners:
        result["subdistill_breakdown"] = head_breakdown(runners["subdistill"], breakdown_repeats)
        if profile:
            result["profile_subdistill_top_ops"] = runners["subdistill"].profile()
            if "kd" in runners:
                result["profile_kd_top_ops"] = runners["kd"].profile(top=10)
    return report(result, out, verbose, format_table)


def format_table(result: dict) -> str:
    lines = ["| method | ms/step (median) | IQR | steps | ratio to kd |",
             "|---|---:|---:|---:|---:|"]
    for label, s in result["summary"].items():
        ratio = "" if s["ratio_to_kd"] is None else f"{s['ratio_to_kd']:.3f}x"
        lines.append(f"| {label} | {s['ms_median']:.1f} | {s['ms_q1']:.1f}-{s['ms_q3']:.1f} | "
                     f"{s['steps']} | {ratio} |")
    if "subdistill_breakdown" in result:
        pairs = len(result["config"]["pairs"])
        lines += ["", f"| SubDistill head component ({pairs} pairs) | ms/step |", "|---|---:|"]
        for name, ms in result["subdistill_breakdown"]["ms_per_step"].items():
            lines.append(f"| {name} | {ms:.2f} |")
    if "profile_subdistill_top_ops" in result:
        lines += ["", "| top ops, SubDistill step (self CPU) | calls/step | self ms/step |",
                  "|---|---:|---:|"]
        for row in result["profile_subdistill_top_ops"][:15]:
            lines.append(f"| {row['op']} | {row['calls_per_step']:.0f} | "
                         f"{row['self_ms_per_step']:.2f} |")
    return "\n".join(lines)


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="resnet8x4", choices=sorted(TEACHERS))
    p.add_argument("--student", default="resnet8", choices=sorted(STUDENTS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "step_time.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    a = _parse()
    main(teacher=a.teacher, student=a.student, batch_size=a.batch_size,
         methods=tuple(a.methods.split(",")), rounds=a.rounds, steps_per_round=a.steps_per_round,
         warmup=a.warmup, threads=a.threads, profile=not a.no_profile, out=a.out)
