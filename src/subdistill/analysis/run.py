"""``subdistill analyze``: per teacher layer and basis method, the restricted teacher's subtask
accuracy when that layer is replaced by its rank-k reconstruction, for k on a log grid; the
dimensions each layer needs, a student width per stage and a pairing suggested from them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..atomic import write_csv, write_text
from ..config import DistillConfig
from ..jobs import build_teacher_student, load_task_data, resolve_pairs
from ..plots import curve_chart
from ..subspace.basis import BASIS_METHODS
from ..subspace.fit import accumulate_statistics
from .rank import dimensions_needed, k_grid, rank_curve, subtask_scores

DEFAULT_BASES = ("subdistill", "pca", "gradpca", "random")


@dataclass
class Analysis:
    """The curves (rows of ``analysis.csv``), the full teacher's scores and, per layer and
    basis, the dimensions needed (accuracy within 1 point of the full teacher)."""

    rows: list[dict[str, Any]]
    reference: tuple[float, float]
    needed: dict[str, dict[str, int | None]]
    pairs: dict[str, str] = field(default_factory=dict)
    images_per_class: dict[str, int] = field(default_factory=dict)

    def suggested_widths(self) -> dict[str, int]:
        """Per teacher layer, the SubDistill dimensions needed rounded up to a multiple of 8."""
        return {layer: 8 * max(1, math.ceil((needs.get("subdistill") or 0) / 8))
                for layer, needs in self.needed.items()}


def analyze(config: DistillConfig, layers: Sequence[str] | None = None,
            bases: Sequence[str] = DEFAULT_BASES, images: int = 1000,
            positions: int = 20) -> Analysis:
    """The analysis of ``config``'s teacher on its subtask: bases fitted in one streaming pass
    over the (unaugmented) training split, curves measured on up to ``images`` validation
    images drawn at random (seeded by ``train.seed``). ``layers`` default to the config's
    teacher layers (``pairs``, resolved if auto)."""
    for name in bases:
        BASIS_METHODS.get(name)
    data = load_task_data(config.data, config.train.seed)
    teacher, student = build_teacher_student(config, data)
    pairs = resolve_pairs(config, teacher, student, data)
    layers = list(layers or pairs)
    loader = DataLoader(data.splits.train, batch_size=config.train.eval_batch_size,
                        generator=torch.Generator())
    with torch.random.fork_rng(devices=[]):
        stats = accumulate_statistics(teacher, loader, layers, positions=positions or None,
                                      seed=config.train.seed)
    val = data.splits.val  # a seeded random sample: the split is ordered by class
    order = torch.randperm(len(val), generator=torch.Generator().manual_seed(config.train.seed))
    picked = order[:images].tolist()
    x = torch.stack([val[i][0] for i in picked])
    y = torch.tensor([val[i][1] for i in picked])
    batches = list(zip(x.split(256), y.split(256)))
    reference = subtask_scores(teacher, batches)
    rows: list[dict[str, Any]] = []
    needed: dict[str, dict[str, int | None]] = {}
    for layer in layers:
        needed[layer] = {}
        for method in bases:
            basis = stats[layer].basis(method, None, seed=config.train.seed)
            curve = rank_curve(teacher, layer, basis, batches, k_grid(basis.dim))
            needed[layer][method] = dimensions_needed(curve, reference[0])
            rows += [{"layer": layer, "basis": method, "k": k, "d": basis.dim,
                      "accuracy": accuracy, "margin": margin} for k, accuracy, margin in curve]
    counts = {name: int((y == label).sum()) for label, name in enumerate(val.classes)} \
        if hasattr(val, "classes") else {}
    return Analysis(rows, reference, needed, pairs, counts)


def write_analysis(analysis: Analysis, out: str | Path) -> None:
    """``analysis.csv``, ``analysis.md`` and ``<layer>.png`` (accuracy vs k per basis) in
    ``out``."""
    out = Path(out)
    write_csv(out / "analysis.csv", analysis.rows)
    for layer in analysis.needed:
        series: dict[str, list[tuple[float, float]]] = {}
        for row in analysis.rows:
            if row["layer"] == layer:
                series.setdefault(row["basis"], []).append((row["k"], row["accuracy"]))
        curve_chart(out / f"{layer.replace('/', '_')}.png", series, analysis.reference[0],
                    title=f"teacher layer {layer}", xlabel="k (dimensions kept)",
                    ylabel="subtask accuracy")
    write_text(out / "analysis.md", format_analysis(analysis))


def format_analysis(analysis: Analysis) -> str:
    """Markdown: the dimensions each layer needs per basis, and the suggestions."""
    methods = list(next(iter(analysis.needed.values())))
    accuracy, margin = analysis.reference
    dims = {row["layer"]: row["d"] for row in analysis.rows}
    per_class = ", ".join(f"{name} {n}" for name, n in analysis.images_per_class.items())
    lines = [f"Validation images: {sum(analysis.images_per_class.values())} ({per_class}). "
             f"Full teacher on them: accuracy {accuracy:.4f}, mean margin "
             f"{margin:.3f}. Dimensions needed: the smallest k at which the teacher, with the "
             "layer replaced by its rank-k reconstruction, is within 1 point of that accuracy.",
             "", "| teacher layer | d | " + " | ".join(methods) + " | suggested width |",
             "|---|---:|" + "---:|" * (len(methods) + 1)]
    widths = analysis.suggested_widths()
    for layer, needs in analysis.needed.items():
        cells = ["-" if needs[m] is None else str(needs[m]) for m in methods]
        lines.append(f"| {layer} | {dims[layer]} | " + " | ".join(cells) + f" | {widths[layer]} |")
    if analysis.pairs:
        lines += ["", "Pairs (teacher layer: student layer): " + ", ".join(
            f"{t}: {s}" for t, s in analysis.pairs.items())]
    return "\n".join(lines) + "\n"
