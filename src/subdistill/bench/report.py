"""Summaries of a finished grid: mean ± std tables, bar charts and accuracy-versus-rho plots."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..plots import bar_chart, curve_panels, line_chart, scatter_chart


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, float], dict[str, list[float]]]:
    """Test accuracies of the final runs grouped by (subtask, rho) and method."""
    groups: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["subtask"], float(row["rho"]))][row["method"]].append(float(row["test_accuracy"]))
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _within_one_se(stats: Mapping[str, tuple[float, float]],
                   counts: Mapping[str, int]) -> set[str]:
    """The methods whose mean is within one standard error of the best mean."""
    best = max(stats, key=lambda m: stats[m][0])
    mean, std = stats[best]
    margin = std / math.sqrt(counts[best]) if counts[best] > 1 else 0.0
    return {m for m, (value, _) in stats.items() if value >= mean - margin - 1e-12}


def convergence(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, float, str], dict[str, str]]:
    """Per (subtask, rho, method): the median epochs and minutes to 95 % of the run's best
    validation accuracy, how many runs plateaued, and the mean minutes per run (training and
    preparation), from the ledger columns (blank where the rows lack them)."""
    grouped: dict[tuple[str, float, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(row["subtask"], float(row["rho"]), row["method"])].append(row)

    def numbers(group, key):
        return [float(r[key]) for r in group if r.get(key) not in (None, "")]

    table = {}
    for key, group in grouped.items():
        epochs, seconds = numbers(group, "epochs_to_95"), numbers(group, "seconds_to_95")
        minutes = [(float(r["seconds"]) + float(r.get("prepare_seconds") or 0)) / 60
                   for r in group if r.get("seconds") not in (None, "")]
        flags = [r.get("plateaued") for r in group if r.get("plateaued") in ("yes", "no")]
        table[key] = {
            "epochs_to_95": f"{statistics.median(epochs):g}" if epochs else "",
            "minutes_to_95": f"{statistics.median(seconds) / 60:.1f}" if seconds else "",
            "plateaued": f"{flags.count('yes')}/{len(flags)}" if flags else "",
            "minutes": f"{statistics.fmean(minutes):.1f}" if minutes else ""}
    return table


def format_report(rows: Sequence[Mapping[str, Any]], lambdas: Mapping[tuple, float],
                  agreement: Mapping[tuple[str, float], Mapping[str, Mapping[str, float]]]
                  | None = None) -> str:
    """Markdown: per subtask and rho, every method's test accuracy mean ± std over seeds (in
    bold every method within one standard error of the best mean), its share of the teacher's
    subtask accuracy, the chosen λ, the convergence columns (:func:`convergence`); where
    ``agreement`` has the (subtask, rho), a column per attribution method with the students'
    mean heatmap correlation with the teacher (see :func:`bench_agreement`)."""
    teacher: dict[str, Any] = {row["subtask"]: row.get("teacher_test_accuracy") for row in rows}
    converged = convergence(rows)
    lines = []
    for (subtask, rho), methods in sorted(aggregate(rows).items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        stats = {m: _mean_std(v) for m, v in methods.items()}
        bold = _within_one_se(stats, {m: len(v) for m, v in methods.items()})
        explained = (agreement or {}).get((subtask, rho), {})
        attributions = sorted({a for scores in explained.values() for a in scores})
        reference = float(teacher[subtask]) if teacher.get(subtask) not in (None, "") else None
        lines += [f"### {subtask}, rho = {rho:g}", "",
                  "teacher on the subtask: " + ("n/a" if reference is None
                                                else f"{reference:.4f}"), "",
                  "| method | λ | test accuracy (mean ± std) | / teacher | runs | epochs to 95 % "
                  "| min to 95 % | plateaued | min / run |"
                  + "".join(f" heatmap r ({a}) |" for a in attributions),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(attributions)]
        for method, (mean, std) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
            lam = lambdas.get((subtask, method))
            cell = f"{mean:.4f} ± {std:.4f}"
            cell = f"**{cell}**" if method in bold else cell
            share = "" if not reference else f"{mean / reference:.1%}"
            c = converged.get((subtask, rho, method), {})
            scores = explained.get(method, {})
            lines.append(f"| {method} | {'' if lam is None else f'{lam:g}'} | {cell} | {share} | "
                         f"{len(methods[method])} | {c.get('epochs_to_95', '')} | "
                         f"{c.get('minutes_to_95', '')} | {c.get('plateaued', '')} | "
                         f"{c.get('minutes', '')} |"
                         + "".join(f" {scores[a]:.3f} |" if a in scores else " |"
                                   for a in attributions))
        lines += ["", "Bold: within one standard error of the best mean. Epochs and minutes to "
                  "95 %: to 95 % of the run's own best validation accuracy (median over seeds); "
                  "plateaued: runs whose last quarter of epochs added < 0.3 points."]
        if attributions:
            lines += ["", "heatmap r: mean Pearson correlation of the student's patch-pooled "
                      "heatmaps with the teacher's on the same test images (one seed)."]
        lines.append("")
    return "\n".join(lines)


def _parsed(row: Mapping[str, Any], key: str) -> Any:
    """A JSON column of a row (parsed or CSV), None where it is blank or absent."""
    value = row.get(key)
    if value in (None, "", "{}", "[]"):
        return None
    return json.loads(value) if isinstance(value, str) else value


def format_per_class(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: per subtask, at its largest rho, each method's test accuracy per class (mean
    over seeds) and the confusion matrix (summed over seeds) of the method with the best mean
    test accuracy; empty when the rows have no per-class columns."""
    groups = aggregate(rows)
    lines: list[str] = []
    for subtask in sorted({s for s, _ in groups}):
        rho = max(r for s, r in groups if s == subtask)
        group = [r for r in rows if r["subtask"] == subtask and float(r["rho"]) == rho
                 and _parsed(r, "test_per_class_accuracy")]
        if group:
            lines += _per_class_table(subtask, rho, group, groups[(subtask, rho)])
    return "\n".join(lines) + ("\n" if lines else "")


def _per_class_table(subtask: str, rho: float, group: Sequence[Mapping[str, Any]],
                     accuracies: Mapping[str, list[float]]) -> list[str]:
    classes = list(_parsed(group[0], "test_per_class_accuracy"))
    header = ["| method | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    lines = [f"### {subtask}, rho = {rho:g}: test accuracy per class", "", *header]
    for method in sorted(accuracies, key=lambda m: -statistics.fmean(accuracies[m])):
        shares = [_parsed(r, "test_per_class_accuracy") for r in group if r["method"] == method]
        cells = []
        for name in classes:
            values = [share[name] for share in shares if share.get(name) is not None]
            cells.append(f"{statistics.fmean(values):.3f}" if values else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    best = max(accuracies, key=lambda m: statistics.fmean(accuracies[m]))
    matrices = [m for m in (_parsed(r, "test_confusion") for r in group if r["method"] == best)
                if m]
    if matrices:
        total = [[sum(m[i][j] for m in matrices) for j in range(len(classes))]
                 for i in range(len(classes))]
        lines += ["", f"Confusion matrix of {best} (rows: true class, columns: prediction; "
                  f"test images summed over {len(matrices)} seeds):", "",
                  header[0].replace("| method |", "| true \\ predicted |"), header[1]]
        lines += [f"| {name} | " + " | ".join(str(v) for v in counts) + " |"
                  for name, counts in zip(classes, total)]
    return lines + [""]


def format_selection(selection: Sequence[Mapping[str, Any]], lambdas: Mapping[tuple, float]) -> str:
    """Markdown: per subtask, the validation accuracy of every λ candidate of every method
    (the runs that chose λ), the chosen one in bold, and the raw layer weights that the
    chosen λ became (after calibration); empty without selection runs."""
    lines = []
    for subtask in sorted({r["subtask"] for r in selection}):
        rows = [r for r in selection if r["subtask"] == subtask]
        candidates = sorted({float(r["lambda"]) for r in rows})
        first = rows[0]
        lines += [f"### λ selection: {subtask} (validation accuracy, rho {float(first['rho']):g}, "
                  f"seed {first['seed']})", "",
                  "| method |" + "".join(f" λ = {lam:g} |" for lam in candidates)
                  + " chosen | raw layer weights of the chosen run |",
                  "|---|" + "---:|" * (len(candidates) + 1) + "---|"]
        for method in sorted({r["method"] for r in rows}):
            scores = {float(r["lambda"]): float(r["best_val_accuracy"]) for r in rows
                      if r["method"] == method}
            chosen = lambdas.get((subtask, method))
            cells = "".join(
                "  |" if lam not in scores else
                (f" **{scores[lam]:.4f}** |" if lam == chosen else f" {scores[lam]:.4f} |")
                for lam in candidates)
            chosen_run = next((r for r in rows if r["method"] == method
                               and float(r["lambda"]) == chosen), {})
            weights = ", ".join(f"{k.removeprefix('layer/')} {v:.3g}"
                                for k, v in (_parsed(chosen_run, "layer_weights") or {}).items())
            lines.append(f"| {method} |{cells} {'' if chosen is None else f'{chosen:g}'} | "
                         f"{weights} |")
        lines.append("")
    return "\n".join(lines)


def format_deployment(deployment: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: the teacher's and the student architecture's size and speed (one thread)."""
    lines = ["## Deployment", "", "Measured once per architecture (every method's student "
             "has the same): parameters, multiply-accumulates per image, weights file, CPU "
             "latency at batch 1 (median of 50, one thread) and throughput at batch 64.", "",
             "| model | parameters | MACs / image | file | latency ms | images/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, d in deployment.items():
        lines.append(f"| {name} | {d['parameters']:,} | {d['macs']:,} | "
                     f"{d['file_bytes'] / 1024:.0f} KiB | {d['latency_ms_median']:.3f} | "
                     f"{d['images_per_s_batch64']:,.0f} |")
    return "\n".join(lines) + "\n\n"


def write_report(out: Path, rows: Sequence[Mapping[str, Any]], lambdas: Mapping[tuple, float],
                 agreement: Mapping[tuple[str, float], Mapping[str, Mapping[str, float]]]
                 | None = None, selection: Sequence[Mapping[str, Any]] = (),
                 deployment: Mapping[str, Mapping[str, float]] | None = None,
                 missing: Sequence[str] = ()) -> None:
    """Write ``summary.md`` (see :func:`format_report`, :func:`format_per_class`, then
    :func:`format_selection` of the
    ``selection`` runs and, with ``deployment``, :func:`format_deployment`; ``missing``: the
    grid's cells without a run, listed first), a bar chart per
    subtask (largest rho), an accuracy-versus-rho plot per subtask and, with ``deployment``,
    an accuracy-versus-latency scatter per subtask (largest rho) into ``out``."""
    gaps = (f"**{len(missing)} cells of the grid are not in the ledger yet** (the tables use "
            "the runs that are): " + "; ".join(missing) + "\n\n") if missing else ""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "summary.md",
               "# Benchmark summary\n\n" + gaps + format_report(rows, lambdas, agreement)
               + format_per_class(rows) + format_selection(selection, lambdas)
               + (format_deployment(deployment) if deployment else ""))
    groups = aggregate(rows)
    teacher = _teacher_accuracies(rows)
    if deployment:
        _latency_plots(out, rows, groups, deployment)
    for subtask in sorted({s for s, _ in groups}):
        rhos = sorted(r for s, r in groups if s == subtask)
        top = groups[(subtask, rhos[-1])]
        methods = sorted(top)
        stats = [_mean_std(top[m]) for m in methods]
        seeds = max(len(v) for v in top.values())
        bar_chart(out / f"{subtask}_bars.png", methods, [m for m, _ in stats],
                  errors=[s for _, s in stats], title=f"{subtask}, rho = {rhos[-1]:g}",
                  ylabel="test accuracy", reference=teacher.get(subtask),
                  error_label=f"± std over {seeds} seeds")
        series: dict[str, Sequence[tuple[float, float]]] = {
            m: [_mean_std(groups[(subtask, r)][m]) for r in rhos] for m in methods
                  if all(m in groups[(subtask, r)] for r in rhos)}
        line_chart(out / f"{subtask}_rho.png", rhos, series,
                   title=f"{subtask} (± std over {seeds} seeds)",
                   xlabel="training fraction rho", ylabel="test accuracy",
                   reference=teacher.get(subtask))
        _time_plot(out, subtask, rhos[-1], rows, teacher.get(subtask))


def _teacher_accuracies(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The teacher's test accuracy per subtask, where the rows have it."""
    return {row["subtask"]: float(row["teacher_test_accuracy"]) for row in rows
            if row.get("teacher_test_accuracy") not in (None, "")}


def _time_plot(out: Path, subtask: str, rho: float, rows: Sequence[Mapping[str, Any]],
               teacher: float | None) -> None:
    """Validation (``<subtask>_time.png``) and, where recorded, test accuracy
    (``<subtask>_time_test.png``) against training minutes and against epochs of every
    method's lowest-seed run at ``rho`` (time-to-accuracy), from the ledger's ``curve`` and
    ``test_curve`` columns; none without curves."""
    for column, name, label in (("curve", "time", "validation"), ("test_curve", "time_test", "test")):
        runs = sorted((r for r in rows if r["subtask"] == subtask and float(r["rho"]) == rho
                       and _parsed(r, column)), key=lambda r: int(r["seed"]))
        minutes: dict[str, list[tuple[float, float]]] = {}
        epochs: dict[str, list[tuple[float, float]]] = {}
        for row in runs:
            curve = _parsed(row, column)
            minutes.setdefault(row["method"], [(s / 60, a) for _, s, a in curve])
            epochs.setdefault(row["method"], [(e, a) for e, _, a in curve])
        if minutes:
            curve_panels(out / f"{subtask}_{name}.png",
                         {"training minutes": minutes, "epochs": epochs}, reference=teacher,
                         title=f"{subtask}, rho = {rho:g}, seed {min(int(r['seed']) for r in runs)}",
                         ylabel=f"{label} accuracy", log_x=False,
                         reference_label="teacher (test)")


def _latency_plots(out: Path, rows: Sequence[Mapping[str, Any]],
                   groups: Mapping[tuple[str, float], Mapping[str, list[float]]],
                   deployment: Mapping[str, Mapping[str, float]]) -> None:
    """Test accuracy against batch-1 latency per subtask: the teacher and every method."""
    teacher: dict[str, Any] = {row["subtask"]: row.get("teacher_test_accuracy") for row in rows}
    for subtask in sorted({s for s, _ in groups}):
        rho = max(r for s, r in groups if s == subtask)
        latency = deployment["student"]["latency_ms_median"]
        points = {m: (latency, statistics.fmean(v)) for m, v in groups[(subtask, rho)].items()}
        if teacher.get(subtask) not in (None, ""):
            points["teacher"] = (deployment["teacher"]["latency_ms_median"],
                                 float(teacher[subtask]))
        scatter_chart(out / f"{subtask}_latency.png", points, title=f"{subtask}, rho = {rho:g}",
                      xlabel="CPU latency at batch 1 (ms, one thread)", ylabel="test accuracy")
