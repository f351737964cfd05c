"""The plateau check of docs/benchmarks.md: the grid's runs against the same cells trained
longer (``make plateau-cifar10`` writes the longer runs to their own ledger).

For every row of the long ledger, the grid ledger's row of the same cell (stage, subtask,
method, ρ, seed, λ) is looked up; the table gives both runs' epochs, best validation accuracy
(and its epoch), test accuracy, how much the last quarter of the long run's epochs added, and
the change in test accuracy. One figure per subtask draws the validation curves of both runs
against epochs, the teacher's subtask accuracy as a dashed line.

    python benchmarks/plateau_check.py benchmarks/results/ledger-cifar10.csv \\
        benchmarks/results/ledger-cifar10-plateau.csv --out benchmarks/results/plateau-cifar10.json \\
        --figures docs/figures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.bench.ledger import Ledger  # noqa: E402
from subdistill.plots import curve_panels  # noqa: E402
from subspace_fit import machine_info, report  # noqa: E402


def _run(row: dict[str, Any]) -> dict[str, Any]:
    """The figures of one ledger row the check compares."""
    gain = row.get("plateau_gain", "")
    return {"epochs": int(row["epochs"]), "best_epoch": int(row["best_epoch"]),
            "best_val_accuracy": float(row["best_val_accuracy"]),
            "test_accuracy": float(row["test_accuracy"]),
            "plateau_gain": None if gain == "" else float(gain),
            "plateaued": row.get("plateaued", ""), "minutes": float(row["seconds"]) / 60,
            "curve": json.loads(row["curve"]) if row.get("curve") else []}


def teacher_accuracies(*ledgers: Ledger) -> dict[str, float]:
    """The teacher's test accuracy per subtask, from the rows that have a teacher (the
    label-only student's rows leave it empty)."""
    found = {}
    for ledger in ledgers:
        for row in ledger.rows.values():
            if row.get("teacher_test_accuracy", "") != "":
                found.setdefault(row["subtask"], float(row["teacher_test_accuracy"]))
    return found


def compare(grid: Ledger, long: Ledger) -> list[dict[str, Any]]:
    """One entry per long run whose cell the grid holds: both runs' figures and the teacher's
    subtask accuracy (None where no row of that subtask has a teacher)."""
    teachers = teacher_accuracies(grid, long)
    pairs = []
    for key, row in sorted(long.rows.items()):
        # at the selection ρ and seed a grid's final run is its λ-selection run of that λ
        short = grid.rows.get(key) or grid.rows.get(("select", *key[1:]))
        if short is None:
            print(f"{'/'.join(key)}: not in the grid's ledger, left out", file=sys.stderr)
            continue
        pairs.append({"subtask": row["subtask"], "method": row["method"],
                      "rho": float(row["rho"]), "seed": int(row["seed"]),
                      "lambda": row["lambda"], "teacher": teachers.get(row["subtask"]),
                      "grid": _run(short), "long": _run(row)})
    return pairs


def format_table(result: dict) -> str:
    """The comparison as a Markdown table."""
    lines = ["| subtask | method | λ | epochs | best val. (epoch) | test | / teacher "
             "| last-quarter gain | plateaued | test change | minutes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for pair in result["pairs"]:
        for name in ("grid", "long"):
            run = pair[name]
            gain = "" if run["plateau_gain"] is None else f"{100 * run['plateau_gain']:+.2f} pt"
            change = (f"{100 * (run['test_accuracy'] - pair['grid']['test_accuracy']):+.2f} pt"
                      if name == "long" else "")
            share = ("" if pair["teacher"] is None
                     else f"{100 * run['test_accuracy'] / pair['teacher']:.1f}%")
            lines.append(f"| {pair['subtask']} | {pair['method']} | {pair['lambda']} | "
                         f"{run['epochs']} | {run['best_val_accuracy']:.4f} ({run['best_epoch']}) "
                         f"| {run['test_accuracy']:.4f} | {share} | {gain} | {run['plateaued']} "
                         f"| {change} | {run['minutes']:.1f} |")
    return "\n".join(lines)


def draw(pairs: list[dict[str, Any]], figures: Path, prefix: str) -> list[str]:
    """``<prefix>-<subtask>-plateau.png``: validation accuracy against epochs of both runs."""
    paths = []
    for subtask in sorted({p["subtask"] for p in pairs}):
        chosen = [p for p in pairs if p["subtask"] == subtask]
        series = {f"{p['method']}, {p[name]['epochs']} epochs": [(e, a) for e, _, a in
                                                               p[name]["curve"]]
                  for p in chosen for name in ("grid", "long")}
        path = figures / f"{prefix}-{subtask}-plateau.png"
        teacher = next((p["teacher"] for p in chosen if p["teacher"] is not None), None)
        curve_panels(path, {"epochs": series}, reference=teacher,
                     title=f"{subtask}: the grid's runs and the same cells trained longer",
                     ylabel="validation accuracy", log_x=False, reference_label="teacher (test)")
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", help="the grid's ledger (CSV)")
    parser.add_argument("long", help="the ledger of the same cells trained longer (CSV)")
    parser.add_argument("--out", help="JSON file for the figures")
    parser.add_argument("--figures", help="folder for the plots")
    parser.add_argument("--prefix", default="cifar10", help="file name prefix of the plots")
    args = parser.parse_args()
    pairs = compare(Ledger(args.grid), Ledger(args.long))
    if not pairs:
        raise SystemExit("no cell of the long ledger is in the grid's ledger")
    result: dict[str, Any] = {"machine": machine_info(), "grid": args.grid, "long": args.long,
                              "pairs": pairs}
    if args.figures:
        result["figures"] = draw(pairs, Path(args.figures), args.prefix)
    report(result, args.out, True, format_table)


if __name__ == "__main__":
    main()
