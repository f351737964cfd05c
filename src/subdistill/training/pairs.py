"""Resolving layer pairs: which teacher layer feeds which student layer, at which shapes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..methods.base import LayerPair
from ..modes import eval_mode
from ..taps import LayerTaps, as_grid


@torch.no_grad()
def probe_pairs(teacher: nn.Module, student: nn.Module, pairs: Mapping[str, str],
                example: Tensor) -> list[LayerPair]:
    """Run both models once on ``example`` and describe each teacher -> student pair."""
    if not pairs:
        return []
    shapes = {}
    for role, model, layers in (("teacher", teacher, pairs.keys()),
                                ("student", student, pairs.values())):
        with eval_mode(model), LayerTaps(model, layers) as taps:
            model(example)
            shapes[role] = {k: as_grid(v).shape[1:] for k, v in taps.outputs.items()}
    result = []
    for t_layer, s_layer in pairs.items():
        t_shape, s_shape = shapes["teacher"][t_layer], shapes["student"][s_layer]
        result.append(LayerPair(t_layer, s_layer, t_shape[0], s_shape[0],
                                (t_shape[1], t_shape[2]), (s_shape[1], s_shape[2])))
    return result
