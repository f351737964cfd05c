"""Classifying image files with a run's student or an exported model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import functional as TF

from ..errors import ConfigError, first_line
from .expert import build_expert, load_spec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}


@dataclass
class Predictor:
    """A model (images in [0, 1] -> logits) with what its inputs and outputs are."""

    run: Callable[[Tensor], Tensor]
    classes: list[str]
    input_shape: tuple[int, int, int]
    resize: int | None = None

    def load(self, path: Path) -> Tensor:
        """``path`` as a (C, H, W) tensor in [0, 1], preprocessed as in training: grey or RGB,
        the shorter side resized (to ``resize``, else to the input size), centre-cropped."""
        channels, height, width = self.input_shape
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
        image = TF.resize(image, self.resize or min(height, width))
        return TF.to_tensor(TF.center_crop(image, [height, width]))

    def top(self, images: Tensor, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes of each image, with their probabilities."""
        with torch.no_grad():
            probabilities = torch.softmax(self.run(images.contiguous()).float(), dim=1)
        values, indices = probabilities.topk(min(k, len(self.classes)), dim=1)
        return [[(self.classes[i], float(p)) for p, i in zip(row_p, row_i)]
                for row_p, row_i in zip(values.tolist(), indices.tolist())]


def open_predictor(model: str | Path) -> Predictor:
    """A run directory's student, or an exported model file with its ``.json`` beside it."""
    path = Path(model)
    if path.is_dir():
        spec = load_spec(path)
        return Predictor(build_expert(spec), spec.classes, spec.input_shape, spec.resize)
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file() or not sidecar.is_file():
        raise ConfigError(f"{path} is neither a run directory nor an exported model with its "
                          f"metadata file {sidecar.name} beside it")
    from .export import load_exported

    meta = json.loads(sidecar.read_text())
    shape = tuple(meta["input_shape"])
    return Predictor(load_exported(path, meta.get("format")), list(meta["classes"]),
                     (shape[0], shape[1], shape[2]), meta.get("resize"))


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and the image files inside the folders named (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def predict(predictor: Predictor, files: Iterable[Path], k: int = 3,
            batch_size: int = 64) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows ``{"file", "top": [(class, probability), ...]}`` for every readable image, and a
    one-line message per file that could not be read (the others are still classified)."""
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    batch: list[tuple[Path, Tensor]] = []

    def flush() -> None:
        if batch:
            for (file, _), top in zip(batch, predictor.top(torch.stack([t for _, t in batch]), k)):
                rows.append({"file": str(file), "top": top})
            batch.clear()

    for file in files:
        try:
            batch.append((file, predictor.load(file)))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            errors.append(f"{file}: cannot read it as an image ({first_line(err)})")
        if len(batch) == batch_size:
            flush()
    flush()
    return rows, errors
