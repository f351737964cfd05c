"""Runs that are killed (SIGKILL) at a chosen file write, for tests/training/test_kill_resume.py.

Every file a run or a grid writes goes through ``subdistill.atomic.atomic_path`` and ends with
one ``os.replace``; write number ``k`` is killed just before its replace (the temporary file
is complete, the target untouched) or just after it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import torch
import yaml
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill import atomic

PAIRS = {"stage1": "stage1", "stage2": "stage2"}


def _data(n: int, seed: int) -> TensorDataset:
    prototypes = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % 3
    x = prototypes[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, y)


def kill_at(write: int | None, when: str) -> None:
    """Make write number ``write`` (from 1) SIGKILL this process ``before`` or ``after`` its
    replace; count the writes into the environment variable for the parent."""
    if write is None:
        return
    replace, count = os.replace, [0]

    def killing_replace(src, dst):
        count[0] += 1
        if count[0] == write and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst)
        if count[0] == write and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    atomic.os.replace = killing_replace  # type: ignore[attr-defined]


def count_writes(job, *args) -> int:
    """The number of atomic writes ``job(*args)`` makes."""
    replace, count = os.replace, [0]

    def counting_replace(src, dst):
        count[0] += 1
        replace(src, dst)

    atomic.os.replace = counting_replace  # type: ignore[attr-defined]
    threads = torch.get_num_threads()  # the jobs set one thread: not for the tests after
    try:
        job(*args)
    finally:
        atomic.os.replace = replace  # type: ignore[attr-defined]
        torch.set_num_threads(threads)
    return count[0]


def distill_run(run_dir: str, write: int | None = None, when: str = "before") -> None:
    """A two-epoch SubDistill run (bases, calibration, checkpoints) into ``run_dir``, resumed
    from whatever is there."""
    from subdistill.training import distill

    torch.set_num_threads(1)
    kill_at(write, when)
    torch.manual_seed(0)
    teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
    distill(teacher, student, _data(48, 0), _data(24, 1), test=_data(24, 2), pairs=PAIRS,
            epochs=2, batch_size=8, augment="crop-flip", progress=False, run_dir=run_dir,
            resume=True)


def bench_run(config_file: str, write: int | None = None, when: str = "before") -> None:
    """The grid of ``config_file``, resumed from whatever its out_dir holds."""
    from subdistill.bench import BenchConfig, run_bench
    from subdistill.config import load_config

    torch.set_num_threads(1)
    kill_at(write, when)
    run_bench(load_config(config_file, cls=BenchConfig))


def run_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> contents), with wall-clock times dropped
    (seconds in metrics, summaries and ledgers; a grid's measured latencies and training
    times; a run's start time; ``train.log``, which records the kill and the resume) and the
    folder's own path written ``<out>``."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name in ("checkpoint.pt", "deployment.json", "train.log") or path.name.endswith(
                ("_latency.png", "_time.png")):
            continue  # wall-clock times: the history, latencies, time-to-accuracy and plots
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            data = json.dumps([_without_seconds(row) for row in rows]).encode()
        elif path.suffix == ".json":
            data = json.dumps(_without_seconds(json.loads(path.read_text()))).encode()
        elif path.suffix == ".safetensors":  # its metadata's order differs between processes
            data = _safetensors_content(path)
        elif path.suffix == ".csv":
            with open(path, newline="") as handle:
                data = json.dumps([_without_seconds(r) for r in csv.DictReader(handle)]).encode()
        elif path.name == "config.yaml":
            record = yaml.safe_load(path.read_text())
            record.get("provenance", {}).pop("started", None)
            data = yaml.safe_dump(record).encode()
        elif path.name == "summary.md":  # its deployment section holds measured latencies
            data = path.read_bytes().split(b"## Deployment")[0]
        else:
            data = path.read_bytes()
        files[str(path.relative_to(folder))] = data.replace(str(folder).encode(), b"<out>")
    return files


def _safetensors_content(path: Path) -> bytes:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        parts = [json.dumps(sorted((handle.metadata() or {}).items())).encode()]
        for key in sorted(handle.keys()):
            tensor = handle.get_tensor(key)
            parts += [key.encode(), str(tuple(tensor.shape)).encode(), str(tensor.dtype).encode(),
                      tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()]
    return b"|".join(parts)


TIMES = {"seconds", "prepare_seconds", "seconds_to_95"}


def _without_seconds(row):
    """A metrics, summary or ledger row without its wall-clock times (a ledger's validation
    curve keeps its epochs and accuracies)."""
    if not isinstance(row, dict):
        return row
    kept = {k: v for k, v in row.items() if k not in TIMES}
    if kept.get("curve"):
        kept["curve"] = [[epoch, accuracy] for epoch, _, accuracy in json.loads(kept["curve"])]
    return kept
