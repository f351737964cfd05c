"""Figures written to run directories (matplotlib, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .atomic import atomic_path

SALIENT, PLAIN = "#d62728", "#4c72b0"  # SubDistill, every other method in a bar chart
# the lines of the other methods: matplotlib's tab10 without its red, which is SubDistill's
OTHERS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


def series_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per series name: ``subdistill`` salient, the others in order from a palette
    without the salient colour (repeating past its nine colours)."""
    others = [name for name in names if name != "subdistill"]
    colours = {name: OTHERS[i % len(OTHERS)] for i, name in enumerate(others)}
    return {name: SALIENT if name == "subdistill" else colours[name] for name in names}


def bar_chart(path: str | Path, labels: Sequence[str], values: Sequence[float],
              errors: Sequence[float] | None = None, title: str = "", ylabel: str = "",
              reference: float | None = None, error_label: str = "") -> None:
    """A labelled bar chart saved as PNG (each value under its label, optional ± errors named
    ``error_label`` in the legend, ``reference`` as a dashed teacher line); a bar labelled
    ``subdistill`` is drawn in a salient colour."""
    figure = Figure(figsize=(1.2 + 1.1 * len(labels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = [SALIENT if label == "subdistill" else PLAIN for label in labels]
    axes.bar(range(len(values)), values, yerr=errors, capsize=3, color=colours,
             error_kw={"label": error_label} if error_label and errors is not None else None)
    if reference is not None:
        axes.axhline(reference, color="black", linestyle="--", linewidth=1, label="teacher")
    ticks = [f"{label}\n{value:.3f}" for label, value in zip(labels, values)]
    axes.set_xticks(range(len(labels)), ticks, rotation=20, ha="right", fontsize=8)
    low = min([*values, *([] if reference is None else [reference])])
    axes.set_ylim(max(0.0, low - 0.1 * (1 - low) - 0.05), 1.0)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if reference is not None or error_label:
        axes.legend(fontsize=7, loc="lower right")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def line_chart(path: str | Path, xs: Sequence[float], series: dict[str, Sequence[tuple[float, float]]],
               title: str = "", xlabel: str = "", ylabel: str = "",
               reference: float | None = None) -> None:
    """One line with ± error bars per series (values given as (mean, std) per x), log x-axis,
    ``reference`` as a dashed teacher line; ``subdistill`` in a salient colour."""
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = series_colours(list(series))
    for name, points in series.items():
        axes.errorbar(xs, [m for m, _ in points], yerr=[s for _, s in points], marker="o",
                      capsize=3, label=name, color=colours[name],
                      linewidth=2.2 if name == "subdistill" else 1.5)
    if reference is not None:
        axes.axhline(reference, color="black", linestyle="--", linewidth=1, label="teacher")
    axes.set_xscale("log")
    axes.set_xticks(list(xs), [f"{x:g}" for x in xs])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize=7, ncols=2)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def scatter_chart(path: str | Path, points: dict[str, tuple[float, float]], title: str = "",
                  xlabel: str = "", ylabel: str = "") -> None:
    """One labelled point per entry (x, y), log x-axis; a point called ``teacher`` is drawn as
    a star, one called ``subdistill`` in a salient colour."""
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, (x, y) in points.items():
        marker, size, colour = {"teacher": ("*", 140, "black"),
                                "subdistill": ("o", 60, SALIENT)}.get(name, ("o", 30, PLAIN))
        axes.scatter([x], [y], marker=marker, s=size, color=colour)
        axes.annotate(name, (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def curve_chart(path: str | Path, series: Mapping[str, Sequence[tuple[float, float]]],
                reference: float | None = None, title: str = "", xlabel: str = "",
                ylabel: str = "", log_x: bool = True,
                reference_label: str = "full teacher") -> None:
    """One line per series of (x, y) points on a log2 (or linear) x-axis, and ``reference``
    as a dashed horizontal line; a series called ``subdistill`` is drawn in a salient colour."""
    curve_panels(path, {xlabel: series}, reference, title, ylabel, log_x, reference_label)


def curve_panels(path: str | Path,
                 panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                 reference: float | None = None, title: str = "", ylabel: str = "",
                 log_x: bool = True, reference_label: str = "full teacher") -> None:
    """Side-by-side panels sharing the y-axis, one per x-axis label in ``panels``, each with a
    line per series as in :func:`curve_chart`; a series keeps its colour in every panel and
    the legend is drawn once, in the last panel."""
    figure = Figure(figsize=(0.5 + 5.0 * len(panels), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    colours = series_colours(names)
    shared: Axes | None = None
    for index, (xlabel, series) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1, sharey=shared)
        shared = shared or axes
        for name, points in series.items():
            axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name,
                      color=colours[name], linewidth=2.2 if name == "subdistill" else 1.5)
        if reference is not None:
            axes.axhline(reference, color="black", linestyle="--", linewidth=1,
                         label=reference_label)
        if log_x:
            axes.set_xscale("log", base=2)
        axes.set_xlabel(xlabel)
        if index == 0:
            axes.set_ylabel(ylabel)
    axes.legend(fontsize=7)
    figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
