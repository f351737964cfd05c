"""Explanation columns of a benchmark: how closely each method's students explain like the
teacher (mean Pearson correlation of patch-pooled heatmaps, per attribution method)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import DataConfig, ModelConfig, to_dict
from ..results import SubtaskSpec, final_rows, final_runs, subtask_label
from .analysis import TEACHER
from .run import ExplainConfig, run_explain

Agreement = dict[tuple[str, float], dict[str, dict[str, float]]]


def bench_agreement(teacher: ModelConfig, student: ModelConfig, data: DataConfig,
                    subtasks: Sequence[SubtaskSpec], final: Sequence[Mapping[str, Any]], *,
                    attributions: Sequence[str], images: int, rho: float, seed: int,
                    out_dir: str | Path) -> Agreement:
    """Explain the final students of a grid (``final``: its final rows, with their run
    directories, relative to ``out_dir`` or absolute) of ``seed`` at ``rho`` next to the
    teacher, per subtask, into ``out_dir/agreement/<subtask>`` (reused when done with the same
    settings and the same students: their paths and settings fingerprints).
    The rows come from memory, not ``results.csv``, which other processes of a split grid
    rewrite. Returns ``{(subtask, rho): {method: {attribution: pearson}}}``."""
    columns: Agreement = {}
    for subtask in subtasks:
        label = subtask_label(subtask)
        students = final_runs(final, out_dir, label, rho, seed)
        explain = ExplainConfig(
            teacher=teacher, student=student,
            students={method: str(path) for method, path in students.items()},
            data=replace(data, subtask=subtask, rho=rho), attributions=list(attributions),
            images=images, out_dir=str(Path(out_dir) / "agreement" / label))
        done = Path(explain.out_dir) / "agreement.json"
        record = to_dict(explain)
        del record["canonizer"]  # never set here: records made before the key stay valid
        record["fingerprints"] = {r["method"]: r.get("fingerprint", "")
                                  for r in final_rows(final, label, rho, seed)}
        saved = json.loads(done.read_text()) if done.is_file() else {}
        if saved.get("config") != record:
            saved = {"config": record, "summary": run_explain(explain)}
            write_text(done, json.dumps(saved, indent=1) + "\n")
        table: dict[str, dict[str, float]] = {}
        for entry in saved["summary"]:
            if entry["model"] != TEACHER:
                table.setdefault(entry["model"], {})[entry["attribution"]] = entry["pearson"]
        columns[(label, rho)] = table
    return columns
