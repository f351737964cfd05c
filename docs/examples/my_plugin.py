"""A subdistill plugin: one method, one dataset, one model with its LRP canonizer and one
attribution method, registered when this file is imported (``imports: [my_plugin.py]`` in a
config, ``subdistill list methods --import my_plugin.py``, or an installed entry point in the
group ``subdistill.plugins``). docs/extending.md walks through each part;
tests/test_plugins.py runs all four from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit.canonizers import NamedMergeBatchNorm

from subdistill.data import ArrayImageDataset, register_dataset, register_presets
from subdistill.explain.attribution import register_attribution
from subdistill.explain.canonizers import register_canonizer
from subdistill.losses import kd_loss
from subdistill.methods import DistillMethod, StepOutputs, register_method
from subdistill.models import register_model, reject_pretrained


# --- a method: KD with a weight that ramps up over the run ----------------------------------
@register_method
class RampedKD(DistillMethod):
    name = "ramped-kd"
    description = "KD whose weight grows linearly from 0 to 1 over the run"
    hparams = {"temperature": 4.0}

    def forward(self, outputs: StepOutputs) -> dict[str, Tensor]:
        kd = kd_loss(outputs.student_logits, outputs.needed_teacher_logits(),
                     self.options["temperature"])
        return {"kd": outputs.progress * kd}


# --- a dataset: 8x8 stripes in three orientations, with a preset subtask --------------------
STRIPES = ("horizontal", "vertical", "diagonal")


@register_dataset("stripes")
def stripes(split: str, root: Path, download: bool, count: int = 90) -> ArrayImageDataset:
    """``count`` noisy 8x8 grey images per split (``root`` is not used)."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = np.arange(count) % len(STRIPES)
    grid = np.indices((8, 8))
    patterns = [grid[0] % 2, grid[1] % 2, (grid[0] + grid[1]) % 2]
    images = np.stack([patterns[y] * 200 + rng.integers(0, 55, (8, 8)) for y in labels])
    return ArrayImageDataset(images[:, None].astype(np.uint8), labels, STRIPES, (0.45,), (0.4,),
                             family="stripes")


register_presets("stripes", {"straight": (0, 1)})


# --- a model and the canonizer LRP needs for it ---------------------------------------------
class TinyNet(nn.Module):
    """conv -> BatchNorm -> ReLU -> global average -> linear."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(F.relu(self.bn(self.conv(x)))), 1))


@register_model("tiny_net")
def tiny_net(num_classes: int, in_channels: int = 3, pretrained: bool = False,
             width: int = 8) -> TinyNet:
    reject_pretrained("tiny_net", pretrained)
    return TinyNet(num_classes, in_channels, width)


register_canonizer("tiny_net", lambda model: isinstance(model, TinyNet),
                   lambda model, example: NamedMergeBatchNorm([(("conv",), "bn")]))


# --- an attribution method: gradient x input of the explained logit gap ---------------------
@register_attribution("gradient-x-input")
def gradient_x_input(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """(B, C, H, W) gradient of the true-class logit gap times the input."""
    from subdistill.explain.target import logit_gap

    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(logit_gap(model(images), labels).sum(), images)
    return grad * images
