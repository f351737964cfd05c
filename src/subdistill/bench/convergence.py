"""How a run converged, from its per-epoch metrics: the validation curve, whether it had
plateaued, and when it reached a given share of its final accuracy (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PLATEAU_TAIL = 0.25
"""The last quarter of the epochs ..."""
PLATEAU_GAIN = 0.003
"""... adding less than 0.3 points of validation accuracy: the run has plateaued."""
TARGET_SHARE = 0.95
"""Time-to-accuracy: the first validation at 95 % of the run's best validation accuracy."""

Curve = list[tuple[int, float, float]]  # (epoch, cumulative training seconds, accuracy)


def accuracy_curve(history: Iterable[Mapping[str, Any]], key: str = "val_accuracy") -> Curve:
    """(epoch, training seconds so far, accuracy ``key``) at every epoch of a run's metrics
    rows (``metrics.jsonl``: ``epoch``, ``seconds``, ``val_accuracy`` on the validated epochs
    and, with ``train.test_curve``, ``test_accuracy`` on the same epochs) that has it."""
    curve, elapsed = [], 0.0
    for row in history:
        elapsed += float(row["seconds"])
        if row.get(key) is not None:
            curve.append((int(row["epoch"]), elapsed, float(row[key])))
    return curve


def plateau_gain(curve: Sequence[tuple[int, float, float]], epochs: int,
                 tail: float = PLATEAU_TAIL) -> float | None:
    """How much the last ``tail`` of the ``epochs`` added to the best validation accuracy
    (best over all validations minus best over those before the tail); None when no
    validation falls before the tail or in it."""
    cut = epochs * (1 - tail)
    before = [acc for epoch, _, acc in curve if epoch <= cut]
    after = [acc for epoch, _, acc in curve if epoch > cut]
    if not before or not after:
        return None
    return max(before + after) - max(before)


def plateaued(gain: float | None, threshold: float = PLATEAU_GAIN) -> bool | None:
    """Whether a run with this :func:`plateau_gain` has plateaued (None: cannot tell)."""
    return None if gain is None else gain < threshold


def time_to_share(curve: Sequence[tuple[int, float, float]],
                  share: float = TARGET_SHARE) -> tuple[int, float] | None:
    """(epoch, training seconds) of the first validation reaching ``share`` of the run's best
    validation accuracy; None for a run without validations."""
    if not curve:
        return None
    goal = share * max(acc for _, _, acc in curve)
    return next((epoch, seconds) for epoch, seconds, acc in curve if acc >= goal)
