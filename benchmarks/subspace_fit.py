"""Benchmark of Step 1 (subspace fit): our streaming fit against the straightforward approach.

Approaches, each timed for N random 3x32x32 images on a randomly initialised CIFAR teacher:

* ``stream``    -- ``subdistill.subspace.fit.fit_subspaces``: one pass, all layers, float64
  moment sums (memory independent of N), backward stopped at the shallowest tapped layer;
* ``stream_bf16`` -- the same with the teacher's forward and backward under bf16 autocast
  and channels-last (what a ``precision: bf16`` run does; the sums stay float64);
* ``per_layer`` -- what the reference code does: one full pass per layer, every sampled
  (activation, gradient) vector kept in RAM, then ``relevant_basis`` on the concatenation;
* ``per_layer_ref`` -- the authors' ``learn_basis`` algorithm: one pass per layer, the
  reference code's full ``backward()`` (the teacher's parameters require and receive gradients,
  the backward runs down to the input), every sampled float32 vector stored;
* ``store_all`` -- one pass for all layers but still keeping every sampled vector (separates
  the cost of the extra passes from the cost of storing the samples).

All approaches draw the same positions (keyed by seed, layer and image as in ``fit_subspaces``), so
their bases must agree up to floating-point summation order. The teacher is frozen in every
approach except ``per_layer_ref`` (no parameter gradients; ``per_layer`` backpropagates only down
to the tapped layer), which makes ``per_layer`` *cheaper* than the reference code. Each
(approach, N, repeat) runs in a fresh subprocess; peak memory is the growth of the resident set
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``) over the resident set just
before the fit, i.e. it counts torch tensors as well as Python objects.

    python benchmarks/subspace_fit.py --sizes 1000,10000,50000 --out benchmarks/results/subspace_fit.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from subdistill.models import create_model
from subdistill.modes import frozen
from subdistill.subspace.basis import relevant_basis
from subdistill.subspace.fit import _position_key, _sample_positions, fit_subspaces, logit_margin
from subdistill.taps import LayerTaps, as_grid, flatten_positions

APPROACHES = ("stream", "stream_bf16", "per_layer", "store_all", "per_layer_ref")
TEACHERS = {
    # name -> (registry name, kwargs, tapped layers)
    "resnet20": ("cifar_resnet20", {}, ("layer1", "layer2.0", "layer2", "layer3")),
    "resnet8": ("cifar_resnet", {"depth": 8}, ("conv1", "layer1", "layer2", "layer3")),
    "resnet8x4": ("resnet8x4", {}, ("conv1", "layer1", "layer2", "layer3")),
    "resnet32x4": ("resnet32x4", {}, ("layer1", "layer2.0", "layer2", "layer3")),
}
RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# memory probes (Linux /proc)

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# workload

class RandomImages:
    """``n`` random images in batches, generated on the fly (no dataset held in memory)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def __iter__(self):
        for index, start in enumerate(range(0, self.n, self.batch_size)):
            b = min(self.batch_size, self.n - start)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            yield torch.randn(b, 3, 32, 32, generator=gen), torch.zeros(b, dtype=torch.long)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


def build_teacher(name: str, seed: int = 0):
    registry_name, kwargs, layers = TEACHERS[name]
    torch.manual_seed(seed)
    teacher = create_model(registry_name, num_classes=10, **kwargs).eval()
    return teacher, list(layers)


def layer_shapes(teacher, layers) -> dict[str, tuple[int, int]]:
    """(channels, positions) of every tapped layer, from one probe image."""
    with torch.no_grad(), LayerTaps(teacher, layers) as taps:
        teacher(torch.zeros(1, 3, 32, 32))
        return {k: (as_grid(v).shape[1], as_grid(v).shape[2] * as_grid(v).shape[3])
                for k, v in taps.outputs.items()}


def _store_pass(teacher, loader, wanted, positions, seed, store, reference=False):
    """One pass keeping the sampled (a, c) of the layers in ``wanted``; positions are drawn as
    in ``accumulate_statistics`` (keyed by seed, layer and image index).
    ``reference``: full ``backward()`` with parameter gradients, as the reference code does."""
    seen = 0
    with (nullcontext() if reference else frozen(teacher)), LayerTaps(teacher, wanted) as taps:
        for x, _ in loader:
            x = x.requires_grad_(True)
            image_ids = torch.arange(seen, seen + len(x))
            seen += len(x)
            margin = logit_margin(teacher(x)).sum()
            outs = [taps.outputs[layer] for layer in wanted]
            if reference:
                teacher.zero_grad(set_to_none=True)
                for out in outs:
                    out.retain_grad()
                margin.backward()
                grads = {layer: out.grad for layer, out in zip(wanted, outs)}
            else:
                grads = dict(zip(wanted, torch.autograd.grad(margin, outs)))
            for layer in wanted:
                a = flatten_positions(as_grid(taps.outputs[layer].detach()))
                c = flatten_positions(as_grid(grads[layer]))
                d = a.shape[-1]
                sampled = _sample_positions(torch.cat([a, c], dim=-1), positions, image_ids,
                                            _position_key(seed, layer))
                store[layer][0].append(sampled[:, :d].clone())
                store[layer][1].append(sampled[:, d:].clone())


def run_approach(approach: str, teacher, layers, ks, loader, positions, seed):
    """Bases {layer: Basis} of one approach."""
    if approach == "stream":
        return fit_subspaces(teacher, loader, ks, positions=positions, seed=seed)
    if approach == "stream_bf16":
        return fit_subspaces(teacher, loader, ks, positions=positions, seed=seed,
                             precision="bf16", channels_last=True)
    store = {layer: ([], []) for layer in layers}
    if approach in ("per_layer", "per_layer_ref"):
        for layer in layers:  # one pass per layer, each drawing the same positions
            _store_pass(teacher, loader, [layer], positions, seed, store,
                        reference=approach == "per_layer_ref")
    elif approach == "store_all":
        _store_pass(teacher, loader, layers, positions, seed, store)
    else:
        raise ValueError(f"unknown approach {approach!r}; choose one of {APPROACHES}")
    bases = {}
    for layer in layers:
        acts, grads = torch.cat(store[layer][0]), torch.cat(store[layer][1])
        bases[layer] = relevant_basis(acts, grads, k=ks[layer])
    return bases


def measure(approach: str, n: int, *, teacher_name: str = "resnet20", batch_size: int = 250,
            positions: int | None = 20, k_fraction: float = 0.25, seed: int = 0,
            threads: int | None = None, save_bases: str | None = None) -> dict:
    """Time and peak-RSS growth of one approach on ``n`` images (call in a fresh process)."""
    if threads:
        torch.set_num_threads(threads)
    teacher, layers = build_teacher(teacher_name, seed)
    shapes = layer_shapes(teacher, layers)
    ks = {layer: max(1, int(shapes[layer][0] * k_fraction)) for layer in layers}
    loader = RandomImages(n, batch_size, seed)
    gc.collect()
    peak_reset = _reset_peak()
    rss_before = _status_kb("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    bases = run_approach(approach, teacher, layers, ks, loader, positions, seed)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    hwm = _status_kb("VmHWM")
    if save_bases:
        torch.save({k: {"U": b.U, "eigenvalues": b.eigenvalues, "energy": b.energy}
                    for k, b in bases.items()}, save_bases)
    growth = None if hwm is None or rss_before is None else (hwm - rss_before) / 1024
    return {"approach": approach, "n": n, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_rss_growth_mb": growth,
            "peak_reset": peak_reset, "layers": {k: {"d": shapes[k][0], "k": ks[k]} for k in layers},
            "threads": torch.get_num_threads()}


def compare_bases(ref: dict, other: dict) -> dict:
    """Per layer: max |U_ref - U_other| up to column signs, projector and eigenvalue differences."""
    out = {}
    for layer, r in ref.items():
        a, b = r["U"], other[layer]["U"]
        signs = torch.sign((a * b).sum(0))
        signs[signs == 0] = 1
        proj = a @ a.T - b @ b.T
        ea, eb = r["eigenvalues"], other[layer]["eigenvalues"]
        out[layer] = {
            "max_abs_u_diff": float((a - b * signs).abs().max()),
            "projector_max_abs_diff": float(proj.abs().max()),
            "eigenvalue_max_rel_diff": float(((ea - eb).abs() / ea.abs().max()).max()),
            "energy_rel_diff": abs(r["energy"] - other[layer]["energy"]) / abs(r["energy"]),
        }
    return out


def _worker(spec: dict, in_process: bool) -> dict:
    if in_process:
        return measure(**spec)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(sizes=(1000, 10000, 50000), approaches=APPROACHES, *, teacher: str = "resnet20",
         repeats: int = 3, max_repeat_n: int = 10000, batch_size: int = 250,
         positions: int | None = 20, k_fraction: float = 0.25, threads: int | None = None,
         skip: dict[str, int] | None = None, out: str | Path | None = None,
         in_process: bool = False, verbose: bool = True) -> dict:
    """Run every (approach, N); ``repeats`` runs for N <= ``max_repeat_n``, else one.
    ``skip[approach] = n_max`` leaves an approach out above ``n_max`` images."""
    skip = dict(skip or {})
    runs, agreement = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            saved = {}
            for approach in approaches:
                if approach in skip and n > skip[approach]:
                    continue
                for rep in range(repeats if n <= max_repeat_n else 1):
                    path = str(Path(tmp) / f"{approach}-{n}.pt") if rep == 0 else None
                    spec = dict(approach=approach, n=n, teacher_name=teacher,
                                batch_size=batch_size, positions=positions,
                                k_fraction=k_fraction, threads=threads, save_bases=path)
                    row = _worker(spec, in_process) | {"repeat": rep}
                    runs.append(row)
                    if path:
                        saved[approach] = torch.load(path)
                    if verbose:
                        print(f"  {approach:9s} N={n:6d} rep {rep}: {row['seconds']:8.2f} s, "
                              f"peak +{row['peak_rss_growth_mb']:.1f} MB", flush=True)
            if "stream" in saved:
                for approach, bases in saved.items():
                    if approach != "stream":
                        agreement.append({"n": n, "approach": approach,
                                          "layers": compare_bases(saved["stream"], bases)})
    summary = []
    for n in sizes:
        for approach in approaches:
            rows = [r for r in runs if r["n"] == n and r["approach"] == approach]
            if not rows:
                continue
            summary.append({
                "approach": approach, "n": n, "repeats": len(rows),
                "seconds_median": statistics.median(r["seconds"] for r in rows),
                "seconds_min": min(r["seconds"] for r in rows),
                "seconds_all": [round(r["seconds"], 3) for r in rows],
                "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in rows),
                "peak_rss_growth_mb_median": statistics.median(
                    r["peak_rss_growth_mb"] for r in rows),
            })
    speedups = []
    for n in sizes:
        t = {s["approach"]: s["seconds_median"] for s in summary if s["n"] == n}
        cpu = {s["approach"]: s["cpu_seconds_median"] for s in summary if s["n"] == n}
        if "stream" in t:
            speedups.append({"n": n, **{f"{a}_over_stream": t[a] / t["stream"]
                                        for a in t if a != "stream"},
                             **{f"{a}_cpu_over_stream": cpu[a] / cpu["stream"]
                                for a in cpu if a != "stream"},
                             **({"per_layer_ref_cpu_over_stream_bf16":
                                 cpu["per_layer_ref"] / cpu["stream_bf16"]}
                                if {"per_layer_ref", "stream_bf16"} <= set(cpu) else {})})
    result = {
        "benchmark": "subspace_fit",
        "machine": machine_info() | ({"torch_threads": threads} if threads else {}),
        "config": {"teacher": teacher, "layers": list(TEACHERS[teacher][2]),
                   "sizes": list(sizes), "approaches": list(approaches), "repeats": repeats,
                   "max_repeat_n": max_repeat_n, "batch_size": batch_size,
                   "positions": positions, "k_fraction": k_fraction, "skip": skip,
                   "inputs": "random N(0,1) 3x32x32, random teacher weights (seed 0)",
                   "isolation": "in-process" if in_process else "one subprocess per run"},
        "runs": runs, "summary": summary, "speedup": speedups, "agreement": agreement,
    }
    return report(result, out, verbose, format_table)


def report(result: dict, out: str | Path | None, verbose: bool, formatter) -> dict:
    """Write ``result`` as JSON to ``out`` (if given), print its table, return it."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if verbose:
        print(formatter(result))
    return result


def format_table(result: dict) -> str:
    lines = ["| approach | N | runs | time s (median) | time s (min) | CPU s (median) | peak RSS "
             "growth MB (median) | CPU time / stream (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    t = {(s["approach"], s["n"]): s["cpu_seconds_median"] for s in result["summary"]}
    for s in result["summary"]:
        ratio = (s["cpu_seconds_median"] / t[("stream", s["n"])] if ("stream", s["n"]) in t
                 else None)
        lines.append(f"| {s['approach']} | {s['n']} | {s['repeats']} | {s['seconds_median']:.2f} "
                     f"| {s['seconds_min']:.2f} | {s['cpu_seconds_median']:.2f} "
                     f"| {s['peak_rss_growth_mb_median']:.1f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    if result["agreement"]:
        lines += ["", "| N | approach vs stream | max abs U diff (up to sign) | max projector diff |"
                  " max rel eigenvalue diff |", "|---:|---|---:|---:|---:|"]
        for a in result["agreement"]:
            vals = a["layers"].values()
            lines.append(f"| {a['n']} | {a['approach']} | "
                         f"{max(v['max_abs_u_diff'] for v in vals):.2e} | "
                         f"{max(v['projector_max_abs_diff'] for v in vals):.2e} | "
                         f"{max(v['eigenvalue_max_rel_diff'] for v in vals):.2e} |")
    return "\n".join(lines)


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--approaches", default=",".join(APPROACHES))
    p.add_argument("--teacher", default="resnet20", choices=sorted(TEACHERS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-repeat-n", type=int, default=10000,
                   help="sizes above this run once")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--positions", type=int, default=20, help="0 = all positions")
    p.add_argument("--k-fraction", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip", default="", help="e.g. per_layer=10000: leave out above that N")
    p.add_argument("--in-process", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "subspace_fit.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
        sys.exit(0)
    main([int(s) for s in args.sizes.split(",")], tuple(args.approaches.split(",")),
         teacher=args.teacher, repeats=args.repeats, max_repeat_n=args.max_repeat_n,
         batch_size=args.batch_size, positions=args.positions or None,
         k_fraction=args.k_fraction, threads=args.threads,
         skip={k: int(v) for k, v in (s.split("=") for s in args.skip.split(",") if s)},
         out=args.out, in_process=args.in_process)
