"""Teacher and student side by side: size, multiply-accumulates, latency, throughput and
accuracy, in PyTorch and (when onnxruntime is installed) as ONNX fp32 and int8."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..atomic import write_text
from ..data import Subtask
from ..jobs import build_model, load_full_data
from ..models import count_parameters, restrict_teacher
from .expert import ExpertSpec, NormalizedExpert, build_expert, load_spec, sample_images


def multiply_accumulates(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image (torch's FLOP counter / 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, *shape))
    return int(counter.get_total_flops() // 2)


def timings(run: Callable[[Tensor], Any], images: Tensor, repeats: int,
            warmup: int = 10) -> list[float]:
    """Seconds of ``repeats`` calls of ``run(images)`` after ``warmup`` untimed ones."""
    with torch.no_grad():
        for _ in range(warmup):
            run(images)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run(images)
            seconds.append(time.perf_counter() - started)
    return seconds


def speed(run: Callable[[Tensor], Any], shape: tuple[int, int, int], repeats: int,
          batch: int) -> dict[str, float]:
    """Latency at batch 1 (median and 90th percentile, ms) and throughput at ``batch``."""
    one = sorted(timings(run, torch.rand(1, *shape), repeats))
    many = timings(run, torch.rand(batch, *shape), max(5, repeats // 5), warmup=3)
    return {"latency_ms_median": 1e3 * statistics.median(one),
            "latency_ms_p90": 1e3 * one[min(len(one) - 1, int(0.9 * len(one)))],
            f"images_per_s_batch{batch}": batch / statistics.median(many)}


def accuracy_of(run: Callable[[Tensor], Tensor], test: tuple[Tensor, Tensor] | None) -> float | None:
    """Top-1 accuracy on the run's test images (None without them)."""
    if test is None:
        return None
    with torch.no_grad():
        predicted = torch.cat([run(x.contiguous()).argmax(1) for x in test[0].split(256)])
    return float((predicted == test[1]).float().mean())


def teacher_expert(spec: ExpertSpec) -> nn.Module | None:
    """The run's teacher restricted to its subtask, behind the same normalisation (None
    without a teacher, its weights or its data)."""
    if spec.teacher is None or spec.data is None or not spec.teacher.weights:
        return None
    if not Path(spec.teacher.weights).is_file():
        return None
    train_full, _ = load_full_data(spec.data)
    teacher = build_model(replace(spec.teacher, pretrained=False), len(train_full.classes),
                          spec.input_shape[0])
    subtask = Subtask.resolve(spec.data.subtask, train_full.classes, train_full.family)
    return NormalizedExpert(restrict_teacher(teacher, subtask), spec.mean, spec.std).eval()


def profile(run_dir: str | Path, repeats: int = 50, batch: int = 64, threads: int = 1,
            onnx: bool = True) -> dict[str, Any]:
    """Measure the teacher and the student of a finished run (see the module docstring);
    writes ``profile.json`` and ``profile.md`` into the run directory and returns the rows."""
    torch.set_num_threads(threads)
    spec = load_spec(run_dir)
    test = sample_images(spec, "test", 10**6)
    models: dict[str, nn.Module] = {"student": build_expert(spec)}
    teacher = teacher_expert(spec)
    if teacher is not None:
        models = {"teacher": teacher, **models}
    rows = []
    for name, model in models.items():
        weights = (Path(spec.teacher.weights) if name == "teacher" and spec.teacher
                   and spec.teacher.weights else spec.weights)
        rows.append({"model": name, "runtime": "pytorch", "parameters": count_parameters(model),
                     "macs": multiply_accumulates(model, spec.input_shape),
                     "file_bytes": weights.stat().st_size, "accuracy": accuracy_of(model, test),
                     **speed(model, spec.input_shape, repeats, batch)})
    if onnx:
        rows += _onnx_rows(spec, models["student"], rows[-1], test, repeats, batch)
    record = {"run": str(spec.run_dir), "threads": threads, "repeats": repeats,
              "test_images": None if test is None else len(test[1]), "rows": rows}
    write_text(spec.run_dir / "profile.json", json.dumps(record, indent=1) + "\n")
    write_text(spec.run_dir / "profile.md", format_profile(record))
    return record


def _onnx_rows(spec: ExpertSpec, student: nn.Module, base: dict[str, Any],
               test: tuple[Tensor, Tensor] | None, repeats: int, batch: int) -> list[dict]:
    """The student exported to ONNX (fp32 and int8) and run by onnxruntime."""
    from .export import export_module, load_exported
    from .quantize import int8_path, quantize_int8

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.onnx"
        images = test[0][:256] if test is not None else torch.rand(64, *spec.input_shape)
        export_module(student, spec.metadata(), "onnx", path, images)
        quantize_int8(spec, path)
        for label, file in (("onnx fp32", path), ("onnx int8", int8_path(path))):
            run = load_exported(file, "onnx")
            rows.append({**{k: base[k] for k in ("model", "parameters", "macs")},
                         "runtime": label, "file_bytes": file.stat().st_size,
                         "accuracy": accuracy_of(run, test),
                         **speed(run, spec.input_shape, repeats, batch)})
    return rows


def format_profile(record: dict[str, Any]) -> str:
    """A Markdown table of :func:`profile`'s rows."""
    rows = record["rows"]
    speed_key = next(k for k in rows[0] if k.startswith("images_per_s"))
    lines = [f"Profile of {record['run']}: {record['threads']} thread(s), latency over "
             f"{record['repeats']} runs at batch 1 after warm-up, accuracy on "
             f"{record['test_images']} test images of the subtask.", "",
             f"| model | runtime | parameters | MACs / image | file | latency ms (median / p90) "
             f"| {speed_key.replace('_', ' ')} | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"| {r['model']} | {r['runtime']} | {r['parameters']:,} | {r['macs']:,} | "
                     f"{r['file_bytes'] / 1024:.0f} KiB | {r['latency_ms_median']:.3f} / "
                     f"{r['latency_ms_p90']:.3f} | {r[speed_key]:,.0f} | {accuracy} |")
    return "\n".join(lines) + "\n"
