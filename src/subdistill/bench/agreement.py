"""Explanation columns of a benchmark: how closely each method's students explain like the
teacher (mean Pearson correlation of patch-pooled heatmaps, per attribution method)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import to_dict
from .config import BenchConfig
from .grid import final_runs, subtask_label

Agreement = dict[tuple[str, float], dict[str, dict[str, float]]]


def bench_agreement(config: BenchConfig, final: Sequence[Mapping[str, Any]]) -> Agreement:
    """Explain the final students (``final``: this grid's final rows) of
    ``config.agreement.seed`` at ``config.agreement.rho`` next to the teacher, per subtask,
    into ``out_dir/agreement/<subtask>`` (reused when done with the same settings). The rows
    come from memory, not ``results.csv``, which other processes of a split grid rewrite.
    Returns ``{(subtask, rho): {method: {attribution: pearson}}}``."""
    from ..explain.analysis import TEACHER
    from ..explain.run import ExplainConfig, run_explain  # explain imports bench

    settings = config.agreement
    columns: Agreement = {}
    for subtask in config.grid.subtasks:
        label = subtask_label(subtask)
        students = final_runs(final, config.out_dir, label, settings.rho, settings.seed)
        explain = ExplainConfig(
            teacher=config.teacher, student=config.student,
            students={method: str(path) for method, path in students.items()},
            data=replace(config.data, subtask=subtask, rho=settings.rho),
            attributions=list(settings.attributions), images=settings.images,
            out_dir=str(Path(config.out_dir) / "agreement" / label))
        done = Path(explain.out_dir) / "agreement.json"
        record = to_dict(explain)
        saved = json.loads(done.read_text()) if done.is_file() else {}
        if saved.get("config") != record:
            saved = {"config": record, "summary": run_explain(explain)}
            write_text(done, json.dumps(saved, indent=1) + "\n")
        table: dict[str, dict[str, float]] = {}
        for entry in saved["summary"]:
            if entry["model"] != TEACHER:
                table.setdefault(entry["model"], {})[entry["attribution"]] = entry["pearson"]
        columns[(label, settings.rho)] = table
    return columns
