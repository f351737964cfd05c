"""Explanation columns of a benchmark: how closely each method's students explain like the
teacher (mean Pearson correlation of patch-pooled heatmaps, per attribution method)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..atomic import write_text
from ..config import to_dict
from .config import BenchConfig
from .grid import subtask_label

Agreement = dict[tuple[str, float], dict[str, dict[str, float]]]


def bench_agreement(config: BenchConfig) -> Agreement:
    """Explain the final students of ``config.agreement.seed`` at ``config.agreement.rho``
    next to the teacher, per subtask, into ``out_dir/agreement/<subtask>`` (reused when done
    with the same settings). Returns ``{(subtask, rho): {method: {attribution: pearson}}}``."""
    from ..explain.analysis import TEACHER
    from ..explain.run import ExplainConfig, run_explain  # explain.run reads bench results

    settings = config.agreement
    columns: Agreement = {}
    for subtask in config.grid.subtasks:
        label = subtask_label(subtask)
        explain = ExplainConfig(
            teacher=config.teacher, student=config.student, bench=config.out_dir,
            bench_seed=settings.seed, data=replace(config.data, subtask=subtask, rho=settings.rho),
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
