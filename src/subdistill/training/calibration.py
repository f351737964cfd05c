"""Balancing the loss terms of a layer-wise method before the first step, and the warnings
when the terms are out of balance or the student collapses."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..methods.layerwise import LayerwiseMethod
from ..precision import to_layout

log = logging.getLogger(__name__)

CALIBRATION_BATCHES = 4
"""Unaugmented training batches whose gradient norms set the weights (their mean)."""
IMBALANCE = 100.0
"""A layer term whose gradient is this many times larger or smaller than KD's is reported."""
COLLAPSE_EPOCHS = 3
COLLAPSE_FRACTION = 0.25
"""A training accuracy at chance is reported after this many epochs and this fraction of the
run (whichever is later): students often start slowly under a strong layer term."""

StepOutputsFn = Callable[[Tensor, Tensor], Any]  # (images, labels) -> StepOutputs


def _norm(grads: Sequence[Tensor | None], keep: Sequence[bool]) -> float:
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g, k in zip(grads, keep)
                         if k and g is not None))


def term_gradient_norms(method: LayerwiseMethod, step_outputs: StepOutputsFn,
                        batches: Iterable[tuple[Tensor, Tensor]],
                        params: Sequence[Tensor]) -> dict[str, tuple[float, float]]:
    """Per layer term of ``method``, the mean over ``batches`` of the norm of its unweighted
    gradient and of the KD term's gradient, both with respect to the parameters among
    ``params`` that the layer term reaches (those before its student layer)."""
    sums: dict[str, tuple[float, float]] = {}
    count = 0
    for x, y in batches:
        terms = method.unweighted_terms(step_outputs(x, y))
        kd = torch.autograd.grad(terms.pop("kd"), params, retain_graph=True, allow_unused=True)
        for name, term in terms.items():
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            reached = [g is not None for g in grads]
            layer_sum, kd_sum = sums.get(name, (0.0, 0.0))
            sums[name] = (layer_sum + _norm(grads, reached), kd_sum + _norm(kd, reached))
        count += 1
    return {name: (a / max(count, 1), b / max(count, 1)) for name, (a, b) in sums.items()}


def imbalance_message(ratios: Mapping[str, float]) -> str | None:
    """A warning naming every layer term whose weighted gradient is more than
    :data:`IMBALANCE` times larger or smaller than the KD term's (``ratios``, by term, on the
    parameters the term reaches); ``None`` when balanced."""
    lines = []
    for name, ratio in ratios.items():
        if not 1 / IMBALANCE <= ratio <= IMBALANCE:
            side = "drowns the KD term" if ratio > 1 else "is switched off by the KD term"
            lines.append(f"{name} ({ratio:.3g}x the KD gradient: it {side})")
    if not lines:
        return None
    return ("loss terms out of balance at initialisation: " + "; ".join(lines)
            + ". Use calibration: gradient (lambda is then a ratio) or change lambda")


def collapse_message(history: Sequence[Mapping[str, Any]], classes: int,
                     epochs: int) -> str | None:
    """A warning when, after :data:`COLLAPSE_EPOCHS` epochs and :data:`COLLAPSE_FRACTION` of
    the run's ``epochs``, the training accuracy is still at chance (below 1/C + 10 % of the
    way to 1) while the layer terms have fallen by 10 % or more since the first epoch;
    ``None`` otherwise."""
    if len(history) < max(COLLAPSE_EPOCHS, math.ceil(COLLAPSE_FRACTION * epochs)):
        return None
    chance = 1 / classes
    accuracy = history[-1]["train_accuracy"]
    if accuracy >= chance + 0.1 * (1 - chance):
        return None

    def layer_total(row: Mapping[str, Any]) -> float:
        return sum(v for k, v in row.items() if k.startswith("loss/layer/"))

    first, last = layer_total(history[0]), layer_total(history[-1])
    if not first > 0 or last > 0.9 * first:
        return None
    return (f"training accuracy {accuracy:.3f} is at chance ({classes} classes) after "
            f"{len(history)} epochs while the layer terms fell from {first:.4g} to {last:.4g}: "
            "the student follows the layer term and ignores the task. Use calibration: "
            "gradient or a smaller lambda")


def calibration_batches(train: Dataset, batch_size: int, channels_last: bool,
                        device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """The first :data:`CALIBRATION_BATCHES` unaugmented training batches, in order (the same
    in every process). The loader has a generator of its own, so the global random state is
    not touched."""
    loader = DataLoader(train, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    batches: list[tuple[Tensor, Tensor]] = []
    for x, y, *_ in loader:
        if len(batches) == CALIBRATION_BATCHES:
            break
        if x.shape[0] > 1 or not batches:  # batch normalisation cannot train on one image
            batches.append((to_layout(x.to(device), channels_last), y.to(device)))
    return batches


def calibrate(method: LayerwiseMethod, student: nn.Module, step_outputs: StepOutputsFn,
              batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, tuple[float, float]]:
    """Set ``method``'s layer weights from the gradient norms of its unweighted terms on
    ``batches`` (see :mod:`subdistill.methods.layerwise`) and warn once if the weighted terms
    are out of balance. The student, the method's heads and the random state are left as
    they were (batch statistics included). Returns, by layer term, the gradient norms of the
    term and of KD on the parameters it reaches."""
    states = [copy.deepcopy(m.state_dict()) for m in (student, method)]
    devices = [p.device for p in student.parameters() if p.device.type == "cuda"][:1]
    try:
        with torch.random.fork_rng(devices=devices):
            norms = term_gradient_norms(method, step_outputs, batches,
                                        [p for p in student.parameters() if p.requires_grad])
    finally:
        for module, state in zip((student, method), states):
            module.load_state_dict(state)
    names = list(method.named_weights())
    method.set_calibration([norms[n][1] for n in names], [norms[n][0] for n in names])
    ratios = {n: w * norms[n][0] / norms[n][1] if norms[n][1] > 0 else math.inf
              for n, w in method.named_weights().items()}
    message = imbalance_message(ratios)
    if message is not None:
        log.warning("%s: %s", method.name, message)
    log.info("%s layer weights (calibration %s): %s", method.name, method.calibration,
             ", ".join(f"{k} {w:.4g}" for k, w in method.named_weights().items()))
    return norms
