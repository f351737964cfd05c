"""Benchmark: training-step throughput of the benchmark students against the CPU's peak.

For each student (the benchmarks' ResNet-10-like student on 1x28x28 Fashion-MNIST images and on
3x32x32 CIFAR-10 images, and the mobile student), one training step = forward, cross-entropy,
backward and an AdamW step at the benchmark batch size, in fp32 and under bf16 autocast, with
the default (foreach) and the fused AdamW, and in channels_last. Figures: images/s (median of
``--steps`` timed steps after warm-up), FLOPs per image of the step (torch's FlopCounterMode on
forward + backward), and the achieved fraction of the peak: FLOPs/image x images/s / the
GFLOP/s of a large matrix multiply in the same precision, timed in this script. One thread.
Further rows for the CIFAR student in bf16: batch 512; ``torch.compile`` (``--compile``; its
compile time is reported); and a whole training epoch through the trainer (``distill`` with
KD from a teacher-output cache: batches read from the cache, the step, validation excluded) in
the benchmark configs' old layout and in channels-last, to show what the loop adds to a step.

    python benchmarks/student_throughput.py --compile --out benchmarks/results/student_throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.models import create_model  # noqa: E402
from subspace_fit import machine_info  # noqa: E402

STUDENTS = {  # name: (registry name, args, input shape, batch)
    "resnet10-fmnist": ("cifar_resnet", {"blocks_per_stage": [1, 1, 1, 1],
                                         "widths": [8, 16, 32, 64]}, (1, 28, 28), 128),
    "resnet10-cifar": ("cifar_resnet", {"blocks_per_stage": [1, 1, 1, 1],
                                        "widths": [8, 16, 32, 64]}, (3, 32, 32), 128),
    "mobile-cifar": ("mobile_student", {}, (3, 32, 32), 128),
}


def peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matrix multiply in ``dtype`` (median of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e9


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of forward + backward of one batch."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def images_per_second(model, x, y, precision: str, fused: bool, steps: int) -> float:
    """Median images/s of a full training step (``model`` may be a compiled one)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - started)
    return len(x) / statistics.median(times)


def epoch_images_per_second(channels_last: bool, images: int = 2048) -> float:
    """images/s of one KD training epoch through ``distill`` from a teacher-output cache (the
    CIFAR student, bf16, batch 128; cache built beforehand; the epoch's training time only)."""
    import tempfile

    from torch.utils.data import TensorDataset

    from subdistill.training import distill
    registry, model_args, shape, batch = STUDENTS["resnet10-cifar"]
    generator = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(images, *shape, generator=generator),
                          torch.arange(images) % 4)
    val = TensorDataset(train.tensors[0][:8], train.tensors[1][:8])
    with tempfile.TemporaryDirectory() as cache:
        rates = []
        for _ in range(2):  # the first run builds the cache
            torch.manual_seed(0)
            teacher = create_model(registry, 4, shape[0], **model_args)
            student = create_model(registry, 4, shape[0], **model_args)
            started = time.perf_counter()
            result = distill(teacher, student, train, val, method="kd", epochs=1,
                             batch_size=batch, precision="bf16", channels_last=channels_last,
                             teacher_cache=cache, progress=False)
            elapsed = time.perf_counter() - started
            rates.append(images / min(result.history[0]["seconds"], elapsed))
    return rates[-1]


def _step_rows(args, peaks) -> list[dict]:
    rows = []
    for name, (registry, model_args, shape, batch) in STUDENTS.items():
        torch.manual_seed(0)
        model = create_model(registry, 4, shape[0], **model_args).train()
        x, y = torch.randn(batch, *shape), torch.randint(0, 4, (batch,))
        flops = step_flops(model, x, y) / batch
        variants = [(p, fused, layout, batch) for p in ("fp32", "bf16") for fused, layout in
                    ((False, "contiguous"), (True, "contiguous"), (False, "channels_last"))]
        if name == "resnet10-cifar":
            variants.append(("bf16", False, "channels_last", 512))
        for precision, fused, layout, size in variants:
            inputs = torch.randn(size, *shape) if size != batch else x
            targets = torch.randint(0, 4, (size,)) if size != batch else y
            if layout == "channels_last":
                inputs = inputs.to(memory_format=torch.channels_last)
            net = model.to(memory_format=torch.channels_last if layout == "channels_last"
                           else torch.contiguous_format)
            rate = images_per_second(net, inputs, targets, precision, fused, args.steps)
            rows.append(_row(name, precision, "AdamW fused" if fused else "AdamW foreach",
                             layout, size, rate, flops, peaks))
        if name == "resnet10-cifar" and args.compile:
            started = time.perf_counter()
            compiled = torch.compile(model.to(memory_format=torch.channels_last))
            inputs = x.to(memory_format=torch.channels_last)
            images_per_second(compiled, inputs, y, "bf16", False, 1)  # compiles
            compile_s = time.perf_counter() - started
            rate = images_per_second(compiled, inputs, y, "bf16", False, args.steps)
            rows.append(_row(name, "bf16", "AdamW foreach", "channels_last + torch.compile",
                             batch, rate, flops, peaks) | {"compile_s": compile_s})
    return rows


def _row(name, precision, optimizer, layout, batch, rate, flops, peaks) -> dict:
    row = {"student": name, "precision": precision, "optimizer": optimizer, "layout": layout,
           "batch": batch, "images_per_s": rate, "gflops_per_image": flops / 1e9,
           "fraction_of_peak": flops * rate / 1e9 / peaks[precision]}
    print(f"{name:<16}{precision:<6}{optimizer:<15}{layout:<31}{batch:>5}{rate:>9.0f} img/s  "
          f"{row['fraction_of_peak']:.1%} of peak", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    parser.add_argument("--epoch-images", type=int, default=2048)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
    rows = _step_rows(args, peaks)
    epochs = []
    for channels_last in (False, True):
        rate = epoch_images_per_second(channels_last, args.epoch_images)
        epochs.append({"student": "resnet10-cifar", "precision": "bf16",
                       "layout": "channels_last" if channels_last else "contiguous",
                       "loop": "distill kd epoch from a teacher cache", "images_per_s": rate})
        print(f"epoch through distill (kd, cached teacher), bf16, {epochs[-1]['layout']}: "
              f"{rate:.0f} img/s", flush=True)
    figures = {"machine": machine_info(), "threads": 1, "peak_gflops": peaks, "rows": rows,
               "epochs": epochs}
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
