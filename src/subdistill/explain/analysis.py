"""Teacher-student agreement on the same images: heatmap similarity and patch flipping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .attribution import attribute
from .canonizers import CanonizerSpec
from .flipping import flip_curves
from .metrics import cosine, patch_pool, pearson, topk_overlap
from .patches import default_patch_size

TEACHER = "teacher"


def heatmaps_for(models: Mapping[str, nn.Module], images: Tensor, labels: Tensor, method: str,
                 mean: Sequence[float], std: Sequence[float],
                 canonizers: Mapping[str, CanonizerSpec] | None = None,
                 **options: Any) -> dict[str, Tensor]:
    """(B, H, W) heatmaps of every model (LRP gets the box bounds from ``mean``/``std``, and
    ``canonizers[name]``, the user's canonizer of a model, where given)."""
    def options_of(name: str) -> dict[str, Any]:
        if method != "lrp":
            return options
        return {"mean": mean, "std": std, "canonizer": (canonizers or {}).get(name), **options}

    return {name: attribute(model, images, labels, method, **options_of(name))
            for name, model in models.items()}


def shared_scale_auc(gaps: Tensor) -> Tensor:
    """Per-image flipping AUC ``mean_t g_t`` divided by the mean initial gap ``g_0`` of the
    correctly classified images (NaN for the others), so that the mean over images is the ratio
    of mean areas to mean initial gap: unlike a per-image ``g_t / g_0`` it does not explode for
    images with a tiny initial gap. Lower = the ranking finds the evidence faster."""
    start = gaps[:, 0]
    correct = start > 0
    if not correct.any():
        return torch.full_like(start, float("nan"))
    auc = gaps.mean(1) / start[correct].mean()
    return torch.where(correct, auc, torch.full_like(auc, float("nan")))


def agreement_rows(models: Mapping[str, nn.Module], heatmaps: Mapping[str, Tensor], images: Tensor,
                   labels: Tensor, attribution: str, patch: int | None = None, top_k: int = 5,
                   steps: int | None = None) -> list[dict[str, Any]]:
    """Per-image metrics of every model against ``models[TEACHER]``: Pearson, cosine and top-k
    overlap of the patch-pooled heatmaps, the flipping AUC of the model in its own order and
    (cross flipping) in the teacher's order, and the teacher's AUC in the model's order."""
    patch = patch or default_patch_size(*images.shape[-2:])
    teacher_map = heatmaps[TEACHER]
    pooled_teacher = patch_pool(teacher_map, patch)

    def auc(model: nn.Module, order: Tensor) -> Tensor:
        return shared_scale_auc(flip_curves(model, images, labels, order, patch=patch,
                                            steps=steps).gaps)

    rows = []
    for name, model in models.items():
        pooled = patch_pool(heatmaps[name], patch)
        k = min(top_k, pooled[0].numel())
        columns = {
            "pearson": pearson(pooled_teacher, pooled), "cosine": cosine(pooled_teacher, pooled),
            f"top{k}_overlap": topk_overlap(pooled_teacher, pooled, k),
            "auc_own_order": auc(model, heatmaps[name]),
            "auc_teacher_order": auc(model, teacher_map),
            "teacher_auc_in_this_order": auc(models[TEACHER], heatmaps[name]),
        }
        for i in range(len(images)):
            rows.append({"model": name, "attribution": attribution, "image": i,
                         "label": int(labels[i]),
                         **{key: float(value[i]) for key, value in columns.items()}})
    return rows


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation of every metric per (attribution, model), NaNs ignored
    (e.g. flipping AUCs of misclassified images); ``n`` counts the finite values."""
    metrics = [k for k in rows[0] if k not in ("model", "attribution", "image", "label")]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["attribution"], row["model"]), []).append(row)
    summary = []
    for (attribution, model), members in groups.items():
        entry: dict[str, Any] = {"attribution": attribution, "model": model}
        for metric in metrics:
            values = torch.tensor([m[metric] for m in members], dtype=torch.float64)
            finite = values[torch.isfinite(values)]
            entry[metric] = float(finite.mean()) if len(finite) else float("nan")
            entry[f"{metric}_std"] = float(finite.std()) if len(finite) > 1 else 0.0
            entry[f"{metric}_n"] = len(finite)
        summary.append(entry)
    return summary


def paired_differences(rows: Sequence[Mapping[str, Any]], reference: str,
                       metric: str = "pearson") -> list[dict[str, Any]]:
    """Per attribution method and student, ``reference``'s ``metric`` minus the student's on
    the same image: mean, standard error (std / sqrt(n)) and n over the images where both are
    finite. Paired, so the spread between images (large for heatmap correlations) cancels."""
    values: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        values.setdefault((row["attribution"], row["model"]), {})[row["image"]] = row[metric]
    table = []
    for (attribution, model), own in values.items():
        ref = values.get((attribution, reference))
        if model in (TEACHER, reference) or ref is None:
            continue
        diffs = torch.tensor([ref[i] - own[i] for i in own if i in ref], dtype=torch.float64)
        diffs = diffs[torch.isfinite(diffs)]
        n = len(diffs)
        table.append({"attribution": attribution, "model": model, "n": n,
                      "mean": float(diffs.mean()) if n else float("nan"),
                      "se": float(diffs.std() / n ** 0.5) if n > 1 else float("nan")})
    return table
