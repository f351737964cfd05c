"""Figures written to run directories (matplotlib, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_path


def bar_chart(path: str | Path, labels: Sequence[str], values: Sequence[float],
              errors: Sequence[float] | None = None, title: str = "", ylabel: str = "") -> None:
    """A labelled bar chart saved as PNG (values printed above the bars, optional ± errors)."""
    figure = Figure(figsize=(1.2 + 1.1 * len(labels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bars = axes.bar(range(len(values)), values, yerr=errors, capsize=3, color="#4c72b0")
    axes.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    low = min(values)
    axes.set_ylim(max(0.0, low - 0.1 * (1 - low) - 0.05), 1.0)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
