"""LRP-ready forms of supported architectures (zennit canonizers).

Canonizing merges every BatchNorm into the conv/linear layer that feeds it and turns residual
additions and global pooling into modules that LRP rules can see. Supported: our
:class:`CifarResNet` and :class:`MobileStudent`, torchvision ResNets (zennit's
``ResNetCanonizer``), VGGs, MobileNetV2/V3 and EfficientNets (V1 and V2), and plain
``nn.Sequential`` stacks of standard layers. Squeeze-excitation gates are treated as constants:
the relevance of a gated map goes to the map, none to the gate. Any other model takes the
user's own zennit canonizer (:func:`canonizers_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import (
    VGG,
    EfficientNet,
    MobileNetV2,
    MobileNetV3,
    ResNet,
    efficientnet,
    mobilenetv2,
    mobilenetv3,
)
from torchvision.ops.misc import SqueezeExcitation

from subdistill.explain.errors import ExplainError
from subdistill.extras import missing_extra
from subdistill.models.cifar_resnet import BasicBlock, CifarResNet
from subdistill.models.fast_cnn import FastCNN
from subdistill.models.mobile import InvertedResidual, MobileStudent
from subdistill.modes import frozen
from subdistill.plugins import import_object, keywords_taken
from subdistill.registry import Registry

try:
    from zennit.canonizers import (
        AttributeCanonizer,
        Canonizer,
        CompositeCanonizer,
        NamedMergeBatchNorm,
        SequentialMergeBatchNorm,
    )
    from zennit.layer import Sum
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Activation, AvgPool, BatchNorm, Linear, MaxPool
except ImportError as err:  # the `explain` extra
    raise missing_extra(err.name or "zennit", "explain", "LRP heatmaps") from None

__all__ = ["CANONIZERS", "CanonizerRule", "CanonizerSpec", "ExactMergeBatchNorm", "canonizer_for",
           "canonizers_for", "check_same_outputs", "conv_bn_pairs", "register_canonizer"]

_SEQUENTIAL_LEAVES = (Linear, BatchNorm, Activation, AvgPool, MaxPool, nn.Flatten, nn.Dropout,
                      nn.Identity)


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[tuple[str], str]]:
    """``((linear name,), batch-norm name)`` for every BatchNorm whose input is exactly the output
    of a conv/linear module, found by tracing one forward pass of ``example[:1]`` (eval mode)."""
    producers: dict[int, tuple[Tensor, str]] = {}
    pairs: list[tuple[tuple[str], str]] = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            producers[id(output)] = (output, name)  # keeps the tensor alive: ids stay unique
        return hook

    def match(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            tensor, producer = producers.get(id(inputs[0]), (None, ""))
            if tensor is inputs[0]:
                pairs.append(((producer,), name))
        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, Linear):
            handles.append(module.register_forward_hook(record(name)))
        elif isinstance(module, BatchNorm):
            handles.append(module.register_forward_pre_hook(match(name)))
    try:
        with frozen(model), torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def _basic_block_forward(self: Any, x: Tensor) -> Tensor:  # a BasicBlock
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    shortcut = x if self.downsample is None else self.downsample(x)
    return F.relu(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))


def _inverted_residual_forward(self: Any, x: Tensor) -> Tensor:  # an InvertedResidual
    out = self.project(self.depthwise(self.expand(x)))
    return self.canonizer_sum(torch.stack([x, out], dim=-1)) if self.residual else out


def _torchvision_v2_residual_forward(self: Any, x: Tensor) -> Tensor:  # MobileNetV2's block
    out = self.conv(x)
    return self.canonizer_sum(torch.stack([x, out], dim=-1)) if self.use_res_connect else out


def _torchvision_block_forward(self: Any, x: Tensor) -> Tensor:  # MobileNetV3's, (Fused)MBConv
    out = self.block(x)
    if not self.use_res_connect:
        return out
    if hasattr(self, "stochastic_depth"):  # EfficientNet's (the identity in eval mode)
        out = self.stochastic_depth(out)
    return self.canonizer_sum(torch.stack([x, out], dim=-1))


class _Gated(torch.autograd.Function):
    """``signal * gate``, whose backward hands the incoming relevance to the signal unchanged
    and none to the gate (LRP's signal-take-all rule for multiplicative gates)."""

    @staticmethod
    def forward(ctx: Any, signal: Tensor, gate: Tensor) -> Tensor:
        return signal * gate

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor, None]:
        return relevance, None


def _squeeze_excitation_forward(self: Any, x: Tensor) -> Tensor:  # a SqueezeExcitation
    return _Gated.apply(x, self._scale(x).detach())


def _mobilenet_v2_forward(self: Any, x: Tensor) -> Tensor:  # a MobileNetV2 (functional pooling)
    return self.classifier(torch.flatten(self.canonizer_pool(self.features(x)), 1))


def _cifar_resnet_forward(self: Any, x: Tensor) -> Tensor:  # a CifarResNet
    x = F.relu(self.bn1(self.conv1(x)))
    for index in range(1, self.num_stages + 1):
        x = getattr(self, f"layer{index}")(x)
    return self.fc(torch.flatten(self.canonizer_pool(x), 1))


def _mobile_student_forward(self: Any, x: Tensor) -> Tensor:  # a MobileStudent
    return self.fc(torch.flatten(self.canonizer_pool(self.stages(self.stem(x))), 1))


# Exact type -> (LRP-ready forward, extra modules it uses); subclasses may change forward.
_Forward = tuple[Callable[..., Tensor], dict[str, Callable[[], nn.Module]]]
_FORWARDS: dict[type[nn.Module], _Forward] = {
    BasicBlock: (_basic_block_forward, {"canonizer_sum": Sum}),
    InvertedResidual: (_inverted_residual_forward, {"canonizer_sum": Sum}),
    CifarResNet: (_cifar_resnet_forward, {"canonizer_pool": lambda: nn.AdaptiveAvgPool2d(1)}),
    MobileStudent: (_mobile_student_forward, {"canonizer_pool": lambda: nn.AdaptiveAvgPool2d(1)}),
    mobilenetv2.InvertedResidual: (_torchvision_v2_residual_forward, {"canonizer_sum": Sum}),
    mobilenetv3.InvertedResidual: (_torchvision_block_forward, {"canonizer_sum": Sum}),
    efficientnet.MBConv: (_torchvision_block_forward, {"canonizer_sum": Sum}),
    efficientnet.FusedMBConv: (_torchvision_block_forward, {"canonizer_sum": Sum}),
    SqueezeExcitation: (_squeeze_excitation_forward, {}),
    MobileNetV2: (_mobilenet_v2_forward, {"canonizer_pool": lambda: nn.AdaptiveAvgPool2d(1)}),
}


def _forward_attributes(name: str, module: nn.Module) -> dict[str, object] | None:
    entry = _FORWARDS.get(type(module))
    if entry is None:
        return None
    forward, modules = entry
    return {"forward": forward.__get__(module), **{key: make() for key, make in modules.items()}}


def _is_plain_sequential(model: nn.Module) -> bool:
    """Nested ``nn.Sequential`` containers of standard layers only (no custom forward)."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, _SEQUENTIAL_LEAVES) or type(m) is nn.Sequential for m in model.modules()
    )


@dataclass(frozen=True)
class CanonizerRule:
    """Which models a canonizer serves (``applies(model)``) and how to build it for one
    (``build(model, example)``, ``example`` an input batch)."""

    applies: Callable[[nn.Module], bool]
    build: Callable[[nn.Module, Tensor], Canonizer]


CANONIZERS: Registry[CanonizerRule] = Registry("canonizer", ExplainError)


def register_canonizer(name: str, applies: Callable[[nn.Module], bool],
                       build: Callable[[nn.Module, Tensor], Canonizer]) -> CanonizerRule:
    """Register the LRP canonizer ``build(model, example)`` for the models where
    ``applies(model)``; rules registered later are tried first, so a plugin's rule wins."""
    return CANONIZERS.register(name, CanonizerRule(applies, build))


class ExactMergeBatchNorm(NamedMergeBatchNorm):
    """zennit's NamedMergeBatchNorm, with the merged BatchNorm an exact identity: zennit keeps
    its ``eps``, so it still divides by sqrt(1 + eps), 0.05 % per layer at the eps = 1e-3 of
    torchvision's MobileNetV3 and EfficientNetV2; here ``eps`` is 0 while merged."""

    def register(self, linears: Sequence[nn.Module], batch_norm: nn.modules.batchnorm._BatchNorm) -> None:
        """Merge ``batch_norm`` into ``linears`` and make it the identity."""
        self.eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self) -> None:
        """Undo the merge, ``eps`` included."""
        super().remove()
        self.batch_norm.eps = self.eps


def _merge_and_route(model: nn.Module, example: Tensor) -> Canonizer:
    """Traced conv -> BatchNorm merges, and the LRP-ready forwards of ``_FORWARDS``."""
    return CompositeCanonizer([ExactMergeBatchNorm(conv_bn_pairs(model, example)),
                               AttributeCanonizer(_forward_attributes)])


def _fast_cnn_merges(model: nn.Module, example: Tensor) -> Canonizer:
    """A FastCNN's BatchNorms merged into the convolutions before them. In a ``down`` block a
    max-pool lies between the two; the merge is exact there because a per-channel affine map
    with a positive scale commutes with a max (refused when a scale is not positive)."""
    assert isinstance(model, FastCNN)
    pairs = [] if model.whitening else [(("stem.0",), "stem.1")]
    for index in range(1, model.num_stages + 1):
        stage = f"layer{index}"
        norm = model.get_submodule(f"{stage}.down.2")
        assert isinstance(norm, nn.BatchNorm2d)
        variance = norm.running_var
        assert variance is not None, "a FastCNN's batch norms track their statistics"
        scale = norm.weight / torch.sqrt(variance + norm.eps)
        if not bool((scale > 0).all()):
            raise ExplainError(f"LRP cannot canonize this FastCNN: {stage}.down's batch norm has "
                               "a scale <= 0 after its max-pool, so it cannot be merged into the "
                               "convolution; use method 'ig' or 'svs'")
        pairs += [((f"{stage}.down.0",), f"{stage}.down.2"),
                  ((f"{stage}.refine.0",), f"{stage}.refine.1")]
    return ExactMergeBatchNorm(pairs)


register_canonizer("torchvision-resnet", lambda m: isinstance(m, ResNet),
                   lambda m, x: ResNetCanonizer())
register_canonizer("torchvision-vgg", lambda m: isinstance(m, VGG),
                   lambda m, x: SequentialMergeBatchNorm())
register_canonizer("torchvision-mobile",
                   lambda m: isinstance(m, (MobileNetV2, MobileNetV3, EfficientNet)),
                   _merge_and_route)
register_canonizer("subdistill-models", lambda m: type(m) in (CifarResNet, MobileStudent),
                   _merge_and_route)
register_canonizer("sequential", _is_plain_sequential, lambda m, x: SequentialMergeBatchNorm())
register_canonizer("fast-cnn", lambda m: type(m) is FastCNN, _fast_cnn_merges)


def canonizer_for(model: nn.Module, example: Tensor) -> Canonizer:
    """The zennit canonizer of ``model``'s architecture; ``example`` is an input batch (traced
    to pair convs with BatchNorms). Raises ExplainError for an unsupported architecture."""
    for rule in reversed(CANONIZERS.in_order()):
        if rule.applies(model):
            return rule.build(model, example)
    raise ExplainError(
        f"LRP cannot canonize a {type(model).__name__}: supported are CifarResNet, FastCNN, "
        "MobileStudent, "
        "torchvision ResNet, VGG, MobileNetV2/V3 and EfficientNet, nn.Sequential stacks of "
        "standard layers, and models of a registered canonizer (register_canonizer); else give "
        "your own zennit canonizer (canonizer: module:attribute; docs/explainability.md) or use "
        "method 'ig' or 'svs'."
    )


CanonizerSpec = Union[str, Canonizer, Sequence[Canonizer]]
"""A zennit Canonizer, a list of them, or the import path ``module:attribute`` of either or of
a factory of either (called with the ``model`` and ``example`` it takes by name)."""


def canonizers_for(model: nn.Module, example: Tensor,
                   given: CanonizerSpec | None = None) -> list[Canonizer]:
    """The canonizers LRP applies to ``model``: ``given`` (see :data:`CanonizerSpec`; ``[]``:
    none), else the registered rule's (:func:`canonizer_for`)."""
    if given is None:
        return [canonizer_for(model, example)]
    chosen: object = given
    if isinstance(given, str):
        chosen = import_object(given, ExplainError)
        if callable(chosen) and not isinstance(chosen, Canonizer):
            offered = {"model": model, "example": example}
            taken = keywords_taken(chosen, offered, ExplainError)
            chosen = chosen(**{key: value for key, value in offered.items() if key in taken})
    listed = [chosen] if isinstance(chosen, Canonizer) else chosen
    if not isinstance(listed, (list, tuple)) or not all(isinstance(c, Canonizer) for c in listed):
        raise ExplainError(f"canonizer {given!r}: expected a zennit Canonizer or a list of them, "
                           f"got a {type(chosen).__name__!r}")
    return list(listed)


def check_same_outputs(original: Tensor, canonized: Tensor, model: nn.Module) -> None:
    """Raise ExplainError unless canonizing kept the outputs (to 1e-4 of their largest value)."""
    scale = original.abs().max().clamp_min(1.0)
    error = (canonized - original).abs().max()
    if not bool(error <= 1e-4 * scale):
        raise ExplainError(
            f"canonizing the {type(model).__name__} changed its outputs by up to "
            f"{float(error):.3g}; its layers do not follow the supported conv -> BatchNorm / "
            "residual layout."
        )
