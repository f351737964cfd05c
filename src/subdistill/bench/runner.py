"""Running a grid: every cell once, skipping finished cells and resuming interrupted ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import remove_stale_temporaries, write_csv, write_text
from ..config import to_dict
from ..errors import ConfigError
from ..fingerprint import file_digest
from ..jobs import build_teacher_student, load_full_data, load_task_data, run_distill
from ..models import count_parameters, weights_bytes
from ..results import subtask_label
from ..training.config import run_fingerprint
from ..training.run_files import CHECKPOINT, SUMMARY
from .check import check_bench, check_files
from .config import BenchConfig
from .grid import Cell, cell_config, choose_lambdas, final_cells, same_run, selection_cells
from .ledger import COLUMNS, JSON_COLUMNS, Ledger, convergence_columns
from .report import write_report
from .students import (
    finished_fingerprint,
    keep_student,
    kept_fingerprint,
    kept_students_dir,
    read_stamp,
    write_stamp,
)

log = logging.getLogger(__name__)


def cell_fingerprint(config: BenchConfig, cell: Cell, out: Path) -> str:
    """The settings fingerprint of a cell. Where files lie is not a setting: not the run
    directory (a moved or copied out_dir resumes, a ledger row is found from any machine),
    not the data's folder, and the teacher's weights count by their contents."""
    record = to_dict(cell_config(config, cell, out))
    record.pop("run_dir")
    record["data"].pop("root")
    if not record["data"].get("options"):  # no loader options: as before the key existed
        record["data"].pop("options", None)
    weights = record["teacher"].get("weights")
    if weights and Path(weights).is_file():
        record["teacher"]["weights"] = file_digest(weights)
    return run_fingerprint(record)


def _key_row(cell: Cell) -> dict[str, Any]:
    return {"stage": cell.stage, "subtask": subtask_label(cell.subtask), "method": cell.method,
            "rho": cell.rho, "seed": cell.seed, "lambda": cell.lam, "run_dir": str(cell.path)}


def run_cell(config: BenchConfig, cell: Cell, out: Path, full,
             ledger: Ledger | None = None) -> dict[str, Any]:
    """Run (or resume, or skip when finished here or recorded in ``ledger`` with the same
    settings) one cell; its row for ``results.csv`` (recorded in ``ledger`` too)."""
    fingerprint = cell_fingerprint(config, cell, out)
    recorded = ledger.find(_key_row(cell), fingerprint) if ledger is not None else None
    if recorded is not None:
        return dict(recorded, stage=cell.stage, origin="ledger")
    distill_config = cell_config(config, cell, out)
    run_dir = Path(distill_config.run_dir)
    stamped = read_stamp(run_dir)
    trained = (run_dir / CHECKPOINT).is_file()  # an attempt that failed before training is not
    if trained and stamped is not None and stamped != fingerprint:
        raise ConfigError(f"{run_dir} was run with other settings; the grid's config changed. "
                          "Use another out_dir (or delete that folder) to run the new grid")
    summary_file = run_dir / SUMMARY
    origin = "finished"
    if not summary_file.is_file():
        write_stamp(run_dir, fingerprint)
        log.info("running %s", cell.path)
        run_distill(distill_config, resume=trained, overwrite=not trained, full=full)
        origin = "trained"
    summary = json.loads(summary_file.read_text())
    with open(run_dir / "metrics.jsonl") as handle:
        history = [json.loads(line) for line in handle if line.strip()]
    row = {**_key_row(cell),
           **{k: summary[k] for k in COLUMNS if k in summary and k not in JSON_COLUMNS},
           **{k: json.dumps(summary.get(k, {})) for k in JSON_COLUMNS},
           **convergence_columns(history, int(summary["epochs"])), "fingerprint": fingerprint}
    if ledger is not None:
        ledger.record(row)
        if config.agreement.attributions and (cell.rho, cell.seed) == (config.agreement.rho,
                                                                      config.agreement.seed):
            keep_student(run_dir, kept_students_dir(config.ledger) / cell.path, fingerprint)
    return {**row, "origin": origin}


def measure_deployment(config: BenchConfig, cell: Cell, out: Path,
                       full: Any) -> dict[str, dict[str, float]]:
    """Size (parameters, multiply-accumulates, .safetensors bytes) and CPU speed (one thread)
    of the grid's teacher (restricted to ``cell``'s subtask) and student architecture; none
    needs trained weights. Measured once and kept in ``out/deployment.json`` for the same two
    models."""
    from ..deploy.profile import multiply_accumulates, speed

    stored = out / "deployment.json"
    models = {"teacher": to_dict(config.teacher), "student": to_dict(config.student),
              "file_bytes": "state dict"}  # earlier figures read the files, 0 where absent
    saved = json.loads(stored.read_text()) if stored.is_file() else {}
    if saved.get("models") == models:
        return saved["figures"]

    distill_config = cell_config(config, cell, out)
    data = load_task_data(distill_config.data, cell.seed, full)
    teacher, student = build_teacher_student(distill_config, data)
    shape = data.train_full.image_shape
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures = {name: {"parameters": count_parameters(model),
                          "macs": multiply_accumulates(model.eval(), shape),
                          "file_bytes": weights_bytes(model),
                          **speed(model, shape, 50, 64)}
                   for name, model in (("teacher", teacher), ("student", student))}
    finally:
        torch.set_num_threads(threads)
    write_text(stored, json.dumps({"models": models, "figures": figures}, indent=1) + "\n")
    return figures


def run_bench(config: BenchConfig, report_only: bool = False) -> list[dict[str, Any]]:
    """Run the whole grid: λ selection on validation, then every final cell. Writes
    ``results.csv`` (one row per run) and the report (``summary.md``, plots; with
    ``agreement.attributions`` the explanation columns) into ``config.out_dir``; returns
    the rows. With ``config.ledger``, cells recorded there with the same settings are not run
    and every finished cell is added to it; ``report_only``: no training, the report is built
    from the ledger's rows alone (:func:`report_from_ledger`)."""
    if report_only:
        return report_from_ledger(config)
    out = Path(config.out_dir)
    check_files(config)  # before the data is loaded
    ledger = Ledger(config.ledger) if config.ledger else None
    full = load_full_data(config.data)
    check_bench(config, full)  # every input checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    write_text(out / "bench.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    selection = selection_cells(config.grid)
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:  # results.csv grows as runs finish
        rows.append(row)
        write_csv(out / "results.csv", rows, COLUMNS)

    for cell in selection:
        record(run_cell(config, cell, out, full, ledger))
    lambdas = choose_lambdas(config.grid, [(cell, float(row["best_val_accuracy"]))
                                           for cell, row in zip(selection, rows)])
    for cell in final_cells(config.grid, lambdas):
        reused = same_run(cell, selection)
        if reused is not None:
            record(dict(rows[selection.index(reused)], stage="final"))
        else:
            record(run_cell(config, cell, out, full, ledger))
    final = [r for r in rows if r["stage"] == "final"]
    chose = [r for r in rows if r["stage"] == "select"]
    cells = final_cells(config.grid, lambdas)
    deployment = measure_deployment(config, cells[0], out, full)
    write_report(out, final, lambdas, selection=chose, deployment=deployment)  # explanations
    # take a while: the tables come first
    if config.agreement.attributions:
        from ..explain.agreement import bench_agreement  # zennit, captum: the explain extra

        agreement = config.agreement
        explained = explained_students(config, list(zip(cells, final, strict=True)),
                                       selection, out, full)
        columns = bench_agreement(config.teacher, config.student, config.data,
                                  config.grid.subtasks, explained,
                                  attributions=agreement.attributions, images=agreement.images,
                                  rho=agreement.rho, seed=agreement.seed, out_dir=out)
        write_report(out, final, lambdas, columns, chose, deployment)
    return rows


def explained_students(config: BenchConfig, finals: list[tuple[Cell, dict[str, Any]]],
                       selection: list[Cell], out: Path, full: Any) -> list[dict[str, Any]]:
    """The final rows the agreement explains (at ``agreement.rho`` and ``agreement.seed``),
    each with ``run_dir`` where its student's weights are. With a ledger: the student kept
    beside it (an absolute path), kept now from the grid's run directory when only that holds
    it, trained again when neither does (a grid resumed on a machine that did not train it).
    Without one: the run directory (relative to ``out``)."""
    kept_root = kept_students_dir(config.ledger).resolve() if config.ledger else None
    rows = []
    for cell, row in finals:
        if (cell.rho, cell.seed) != (config.agreement.rho, config.agreement.seed):
            continue
        source = same_run(cell, selection) or cell
        fingerprint = row["fingerprint"]
        kept = kept_root / source.path if kept_root is not None else None
        if kept is None or kept_fingerprint(kept) != fingerprint:
            if finished_fingerprint(out / source.path) != fingerprint:
                log.info("%s: its student is neither in %s nor kept beside the ledger; "
                         "training it again", source.path, out)
                again = run_cell(config, source, out, full)
                if float(again["test_accuracy"]) != float(row["test_accuracy"]):
                    log.warning("%s trained again reaches test accuracy %s, the ledger's run "
                                "%s: the agreement explains the new one", source.path,
                                again["test_accuracy"], row["test_accuracy"])
            if kept is not None:
                keep_student(out / source.path, kept, fingerprint)
        rows.append(dict(row, run_dir=str(kept if kept is not None else source.path)))
    return rows


def report_from_ledger(config: BenchConfig) -> list[dict[str, Any]]:
    """The report of a grid from its ledger alone (no data, no run directory): the rows
    recorded with the grid's current settings, λ chosen from the recorded selection runs;
    cells not in the ledger are listed in ``summary.md`` as missing. Returns the rows."""
    if not config.ledger:
        raise ConfigError("--report-only builds the report from the grid's ledger: set `ledger`")
    ledger = Ledger(config.ledger)
    if not ledger.rows:
        raise ConfigError(f"the ledger {config.ledger} holds no runs")
    out = Path(config.out_dir)

    selection = selection_cells(config.grid)

    def recorded(cells: list[Cell]) -> tuple[list[dict[str, Any]], list[Cell]]:
        found = []  # a final run that is a selection run is recorded as that one
        for cell in cells:
            source = same_run(cell, selection) if cell.stage == "final" else None
            found.append((cell, ledger.find(_key_row(source or cell),
                                            cell_fingerprint(config, source or cell, out))))
        return ([dict(r, stage=c.stage) for c, r in found if r is not None],
                [c for c, r in found if r is None])

    chose, missing = recorded(selection)
    by_dir = {r["run_dir"]: r for r in chose}
    lambdas = choose_lambdas(config.grid, [(c, float(by_dir[str(c.path)]["best_val_accuracy"]))
                                           for c in selection if str(c.path) in by_dir])
    final, lost = recorded(final_cells(config.grid, lambdas))
    missing += lost
    if not final:
        raise ConfigError(f"the ledger {config.ledger} has no final run of this grid's settings "
                          f"({len(missing)} cells missing)")
    stored = out / "deployment.json"
    deployment = json.loads(stored.read_text())["figures"] if stored.is_file() else None
    write_report(out, final, lambdas, selection=chose, deployment=deployment,
                 missing=[f"{c.stage} {subtask_label(c.subtask)} {c.method} rho {c.rho:g} "
                          f"seed {c.seed}" + ("" if c.lam is None else f" λ {c.lam:g}")
                          for c in missing])
    write_csv(out / "results.csv", chose + final, COLUMNS)
    return chose + final


def describe_rows(rows: list[dict[str, Any]]) -> str:
    """One line on a grid's rows: how many trainings they are (a final run that is a
    λ-selection run counted once), how many ran now, and their training and preparation
    time."""
    runs = {row["run_dir"]: row for row in rows}  # a reused selection run: one directory
    ran = sum(1 for row in runs.values() if row.get("origin") == "trained")
    ledger = sum(1 for row in runs.values() if row.get("origin") == "ledger")
    hours = sum(float(row.get("seconds") or 0) + float(row.get("prepare_seconds") or 0)
                for row in runs.values()) / 3600
    final = sum(1 for row in rows if row["stage"] == "final")
    return (f"{len(runs)} trainings ({final} final runs, {len(runs) - final} more for the λ "
            f"selection); {ran} trained now, {ledger} taken from the ledger, the others "
            f"finished before; {hours:.2f} h of training and preparation")
