"""Benchmark: training-step throughput of the benchmark students against the CPU's peak.

For each student (the benchmarks' ResNet-10-like student on 1x28x28 Fashion-MNIST images and on
3x32x32 CIFAR-10 images, and the mobile student), one training step = forward, cross-entropy,
backward and an AdamW step at the benchmark batch size, in fp32 and under bf16 autocast, with
the default (foreach) and the fused AdamW, and in channels_last. Figures: images/s (median of
``--steps`` timed steps after warm-up), FLOPs per image of the step (torch's FlopCounterMode on
forward + backward), and the achieved fraction of the peak: FLOPs/image x images/s / the
GFLOP/s of a large matrix multiply in the same precision, timed in this script. One thread.

    python benchmarks/student_throughput.py --out benchmarks/results/student_throughput.json
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
    """Median images/s of a full training step."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
    rows = []
    for name, (registry, model_args, shape, batch) in STUDENTS.items():
        torch.manual_seed(0)
        model = create_model(registry, 4, shape[0], **model_args).train()
        x, y = torch.randn(batch, *shape), torch.randint(0, 4, (batch,))
        flops = step_flops(model, x, y) / batch
        for precision in ("fp32", "bf16"):
            for fused, layout in ((False, "contiguous"), (True, "contiguous"),
                                  (False, "channels_last")):
                inputs = x.to(memory_format=torch.channels_last) if layout == "channels_last" else x
                net = model.to(memory_format=torch.channels_last) if layout == "channels_last" \
                    else model.to(memory_format=torch.contiguous_format)
                rate = images_per_second(net, inputs, y, precision, fused, args.steps)
                rows.append({"student": name, "precision": precision,
                             "optimizer": "AdamW fused" if fused else "AdamW foreach",
                             "layout": layout, "batch": batch, "images_per_s": rate,
                             "gflops_per_image": flops / 1e9,
                             "fraction_of_peak": flops * rate / 1e9 / peaks[precision]})
                print(f"{name:<16}{precision:<6}{rows[-1]['optimizer']:<15}{layout:<15}"
                      f"{rate:>9.0f} img/s  {rows[-1]['fraction_of_peak']:.1%} of peak")
    figures = {"machine": machine_info(), "threads": 1, "peak_gflops": peaks, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
