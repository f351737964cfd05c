"""The heatmap grid figure: each image (with its true class) next to the teacher's and every
student's heatmap (with the model's prediction and its agreement with the teacher)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..atomic import atomic_path

MAX_ROWS = 6


def heatmap_grid(path: str | Path, images: Tensor, heatmaps: Mapping[str, Tensor],
                 mean: Sequence[float], std: Sequence[float], title: str = "",
                 truths: Sequence[str] = (),
                 captions: Mapping[str, Sequence[str]] | None = None) -> None:
    """PNG grid: a row per image (at most six), columns image, then one heatmap per model
    (red positive, blue negative, symmetric colour scale per heatmap). ``truths``: each
    image's true class, written over it; ``captions``: per model, a line per image written over
    its heatmap (e.g. the prediction and the agreement with the teacher)."""
    rows = min(MAX_ROWS, len(images))
    columns = 1 + len(heatmaps)
    figure = Figure(figsize=(1.6 * columns, 1.6 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    shown = images[:rows] * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    shown = shown.clamp(0, 1).permute(0, 2, 3, 1)
    def heading(name: str, r: int, line: str) -> str:
        return "\n".join(([name] if r == 0 else []) + ([line] if line else []))

    for r in range(rows):
        picture = shown[r, :, :, 0] if shown.shape[-1] == 1 else shown[r]
        axes[r][0].imshow(picture.numpy(), cmap="gray" if shown.shape[-1] == 1 else None)
        truth = f"true: {truths[r]}" if r < len(truths) else ""
        axes[r][0].set_title(heading("image", r, truth), fontsize=7)
        for c, (name, maps) in enumerate(heatmaps.items(), start=1):
            scale = float(maps[r].abs().max()) or 1.0
            axes[r][c].imshow(maps[r].numpy(), cmap="bwr", vmin=-scale, vmax=scale)
            lines = (captions or {}).get(name, ())
            axes[r][c].set_title(heading(name, r, lines[r] if r < len(lines) else ""), fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
