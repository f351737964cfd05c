"""Shared recipe of the layer-wise methods: ``T²·KL + Σ_l w_l · L_l`` without label cross-entropy.

The weight ``w_l`` of each layer term comes from ``lambda`` and ``calibration``:

* ``calibration: gradient`` (the default): ``lambda`` is a ratio. Before the first step the
  trainer measures, on a few unaugmented training batches, the norm of the gradient that each
  unweighted layer term sends into the student's parameters before its layer, and the norm of
  the KD term's gradient on the same parameters, and sets ``w_l = λ · ‖∇KD‖ / ‖∇L_l‖``: at
  initialisation every layer term pulls on the weights it reaches λ times as hard as the KD
  term pulls on them, whatever the scale of the teacher's layer or of the method's loss.
* ``calibration: none``: ``w_l = λ``, the raw weight of the papers. Without an explicit
  ``lambda`` the method's published weight (:attr:`LayerwiseMethod.published_lambda`) is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor

from ..losses import kd_loss
from .base import DistillMethod, LayerPair, StepOutputs

CALIBRATIONS = ("gradient", "none")


def calibrated_weights(ratio: float, kd_norms: Sequence[float],
                       layer_norms: Sequence[float]) -> list[float]:
    """``w_l = ratio · kd_norms[l] / layer_norms[l]``: the weights that make each layer term's
    gradient norm ``ratio`` times the KD term's (both on the parameters the layer term
    reaches). A layer term without gradient keeps ``ratio``."""
    return [ratio * kd / norm if norm > 0 and kd > 0 else ratio
            for kd, norm in zip(kd_norms, layer_norms)]


class LayerwiseMethod(DistillMethod):
    """Base of the methods with a per-pair layer term; subclasses implement :meth:`layer_loss`."""

    hparams = {"lambda": 1.0, "temperature": 4.0, "calibration": "gradient"}
    choices: ClassVar[dict[str, Callable[[], Sequence[str]]]] = {
        "calibration": lambda: CALIBRATIONS}
    uses_layers = True
    published_lambda: ClassVar[float] = 100.0
    """The raw layer weight of the method's paper or reference code (``calibration: none``)."""

    def __init__(self, pairs: Sequence[LayerPair] = (), **options: Any):
        calibration = options.get("calibration", self.hparams["calibration"])
        if calibration == "none" and "lambda" not in options:
            options = {**options, "lambda": self.published_lambda}
        super().__init__(pairs, **options)
        self.layer_weights = [float(self.options["lambda"])] * len(self.pairs)

    @property
    def calibration(self) -> str:
        """How the layer weights are set: ``gradient`` or ``none``."""
        return self.options["calibration"]

    def set_calibration(self, kd_norms: Sequence[float], layer_norms: Sequence[float]) -> None:
        """Fix the layer weights from the gradient norms of KD and of the unweighted layer
        terms, per pair on the parameters its term reaches (measured by the trainer before the
        first step); with ``calibration: none`` nothing changes."""
        if self.calibration == "gradient":
            self.layer_weights = calibrated_weights(self.options["lambda"], kd_norms, layer_norms)

    def named_weights(self) -> dict[str, float]:
        """The weight of every layer term, by term name."""
        return {f"layer/{p.teacher}": w for p, w in zip(self.pairs, self.layer_weights)}

    def get_extra_state(self) -> dict[str, Any]:
        return {"layer_weights": list(self.layer_weights)}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.layer_weights = [float(w) for w in state["layer_weights"]]

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        """Loss of pair ``index`` on its (B, C, H, W) teacher and student maps."""
        raise NotImplementedError

    def unweighted_terms(self, outputs: StepOutputs) -> dict[str, Tensor]:
        """The KD term and every layer term before weighting."""
        terms = {"kd": kd_loss(outputs.student_logits, outputs.needed_teacher_logits(),
                               self.options["temperature"])}
        for i, pair in enumerate(self.pairs):
            terms[f"layer/{pair.teacher}"] = self.layer_loss(
                i, outputs.teacher_features[pair.teacher], outputs.student_features[pair.student])
        return terms

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        terms = self.unweighted_terms(outputs)
        for name, weight in self.named_weights().items():
            terms[name] = weight * terms[name]
        return terms
