"""The paper's 3D-XOR toy: high-variance directions are not necessarily task-relevant.

Eight Gaussian blobs sit at the corners of {−1, +1}³; three binary XOR tasks are read off the
corner signs (x1⊕x2, x1⊕x3, x2⊕x3). A multi-task MLP teacher 3 → 128 (ReLU) → 3 solves all of
them. For one task j, the explained scalar is the top-1 minus runner-up logit of the 2-class
problem (−z_j/2, +z_j/2), i.e. |z_j|, and its gradient at the hidden layer is the context. The
hidden layer is then replaced by its rank-k reconstruction in each basis, and the AUROC of the
recomputed logit z_j against task j's labels says how much of the task survives.

What happens: the top three principal components of the hidden layer (about 80% of its
variance) are almost exactly linear functions of the input (R² ≈ 0.99), which carry no XOR
information, and each readout vector w_j is nearly orthogonal to them. So rank-1 to rank-3 PCA
leaves every task at chance, while the top SubDistill direction (close to w_j, since the context
is ±w_j) keeps it. This holds for all three tasks and every seed tried (0–9).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from ..atomic import write_csv
from ..subspace import relevant_basis

TASKS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
TASK_NAMES: tuple[str, ...] = ("x1^x2", "x1^x3", "x2^x3")
TOY_BASES: tuple[str, ...] = ("subdistill", "pca", "gradpca", "prca", "prca-abs", "random")
KS: tuple[int, ...] = (1, 2, 3)
HEADLINE_TASK = 0  # x1⊕x2; all three tasks show the effect, this one is simply reported first


class Row(NamedTuple):
    """One result: AUROC of task ``task``'s logit with the hidden layer kept at rank ``k``."""

    method: str
    k: int
    task: int
    auroc: float


def make_xor_data(points_per_blob: int = 200, std: float = 0.5,
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """Points ``x`` (8·n, 3) float32 around the corners of {−1,+1}³ and XOR labels ``y`` (8·n, 3)."""
    rng = np.random.default_rng(seed)
    corners = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    centres = np.repeat(corners, points_per_blob, axis=0)
    x = centres + std * rng.standard_normal(centres.shape)
    positive = centres > 0
    y = np.stack([positive[:, i] ^ positive[:, j] for i, j in TASKS], axis=1)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def train_teacher(x: Tensor, y: Tensor, hidden: int = 128, epochs: int = 500, lr: float = 1e-2,
                  seed: int = 0) -> nn.Sequential:
    """Full-batch Adam training of the MLP 3 → ``hidden`` (ReLU) → 3 logits with BCE-with-logits."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, y.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(x), y.float()).backward()
        optimizer.step()
    return model.eval()


def hidden_and_context(teacher: nn.Sequential, x: Tensor, task: int) -> tuple[Tensor, Tensor]:
    """Hidden activations h (post-ReLU) and the context ∂|z_task|/∂h, both (N, hidden)."""
    h = teacher[:2](x).detach().requires_grad_(True)
    z = teacher[2](h)[:, task]
    (context,) = torch.autograd.grad(z.abs().sum(), h)
    return h.detach(), context


def teacher_accuracy(teacher: nn.Sequential, x: Tensor, y: Tensor) -> list[float]:
    """Per-task accuracy of the teacher's logits thresholded at 0."""
    with torch.no_grad():
        return ((teacher(x) > 0).long() == y).float().mean(0).tolist()


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels``."""
    return float(roc_auc_score(labels.numpy(), scores.detach().numpy()))


def evaluate_task(teacher: nn.Sequential, x: Tensor, y: Tensor, task: int,
                  seed: int = 0) -> list[Row]:
    """Teacher AUROC (method ``teacher``, k = hidden width) and rank-k AUROCs of every basis."""
    h, context = hidden_and_context(teacher, x, task)
    head, labels = teacher[2], y[:, task]
    rows = [Row("teacher", h.shape[1], task, auroc(head(h)[:, task], labels))]
    for method in TOY_BASES:
        for k in KS:
            basis = relevant_basis(h, context, method, k=k, seed=seed)
            rows.append(Row(method, k, task, auroc(head(basis.reconstruct(h))[:, task], labels)))
    return rows


def format_table(rows: Sequence[Row], task: int) -> str:
    """Methods as rows, k as columns, for one task."""
    teacher = next(r.auroc for r in rows if r.task == task and r.method == "teacher")
    lines = [f"task {task} ({TASK_NAMES[task]}): teacher AUROC {teacher:.3f}",
             f"{'method':<12}" + "".join(f"{'k=' + str(k):>8}" for k in KS)]
    for method in TOY_BASES:
        values = {r.k: r.auroc for r in rows if r.task == task and r.method == method}
        lines.append(f"{method:<12}" + "".join(f"{values[k]:>8.3f}" for k in KS))
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: Path) -> None:
    """AUROC vs k per method, one panel per task (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = sorted({r.task for r in rows})
    fig = Figure(figsize=(4 * len(tasks), 3.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for method in TOY_BASES:
            pts = sorted((r.k, r.auroc) for r in rows if r.task == task and r.method == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=f"task {TASK_NAMES[task]}", xlabel="k", xticks=KS, ylim=(0, 1.02))
    axes[0].set_ylabel("AUROC of rank-k teacher")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_xor_toy(task: int | None = None, seed: int = 0,
                out_dir: str | Path | None = None) -> list[Row]:
    """Train the teacher on seeded data, evaluate ``task`` (all three if None), print tables.

    Writes ``xor_toy.csv`` and ``xor_toy.png`` into ``out_dir`` when given.
    """
    x, y = make_xor_data(seed=seed)
    teacher = train_teacher(x, y, seed=seed)
    tasks = range(len(TASKS)) if task is None else [task]
    rows = [row for t in tasks for row in evaluate_task(teacher, x, y, t, seed=seed)]
    accuracy = teacher_accuracy(teacher, x, y)
    print("teacher accuracy: " + ", ".join(f"{n} {a:.3f}" for n, a in zip(TASK_NAMES, accuracy)))
    print("\n\n".join(format_table(rows, t) for t in tasks))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "xor_toy.csv", [r._asdict() for r in rows])
        plot(rows, out / "xor_toy.png")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", type=int, choices=range(len(TASKS)), default=None,
                        help="task index (default: all three)")
    parser.add_argument("--out", default=None, help="folder for xor_toy.csv and xor_toy.png")
    args = parser.parse_args(argv)
    run_xor_toy(task=args.task, seed=args.seed, out_dir=args.out)


if __name__ == "__main__":
    main()
