from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torchvision.models import efficientnet_b0, mobilenet_v2, mobilenet_v3_small, resnet18
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.layer import Sum

from subdistill.explain.attribution import lrp
from subdistill.explain.canonizers import (
    canonizer_for,
    canonizers_for,
    check_same_outputs,
    conv_bn_pairs,
)
from subdistill.explain.errors import ExplainError
from subdistill.models.cifar_resnet import cifar_resnet
from subdistill.models.mobile import mobile_student
from subdistill.modes import frozen


def _randomize_batch_norms(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that merging matters."""
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


MODELS = {
    "cifar_resnet8": lambda: cifar_resnet(5, depth=8, widths=(8, 16, 32)),
    "mobile_student": lambda: mobile_student(5, widths=(8, 16), blocks_per_stage=2),
    "torchvision_resnet18": lambda: resnet18(num_classes=5),
    "torchvision_mobilenet_v2": lambda: mobilenet_v2(num_classes=5),
    "torchvision_mobilenet_v3_small": lambda: mobilenet_v3_small(num_classes=5),  # SE, eps 1e-3
    "torchvision_efficientnet_b0": lambda: efficientnet_b0(num_classes=5),
}


@contextmanager
def canonized(model: nn.Module, example: torch.Tensor) -> Iterator[nn.Module]:
    """``model`` in eval mode with its canonizer applied; everything restored on exit."""
    with frozen(model):
        handles = canonizer_for(model, example).apply(model)
        try:
            yield model
        finally:
            for handle in reversed(handles):
                handle.remove()


@pytest.mark.parametrize("name", MODELS)
def test_canonized_model_gives_same_outputs_and_is_restored(name):
    torch.manual_seed(0)
    model = _randomize_batch_norms(MODELS[name]())
    x = torch.randn(4, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    eps = [bn.eps for bn in bns]
    with torch.no_grad():
        reference = model(x)
        with canonized(model, x):
            assert any(isinstance(m, Sum) for m in model.modules())  # residuals made visible
            assert all(torch.all(bn.running_var == 1) for bn in bns)  # all merged
            merged = model(x)
        restored = model(x)
    assert [bn.eps for bn in bns] == eps
    torch.testing.assert_close(merged, reference, rtol=1e-4, atol=1e-5)
    assert torch.equal(restored, reference)
    assert not any(isinstance(m, Sum) for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.state_dict().keys() == state.keys()


def test_conv_bn_pairs_follow_the_data_flow():
    model = cifar_resnet(5, depth=8, widths=(8, 16, 32))
    pairs = dict((bn, linears) for linears, bn in conv_bn_pairs(model, torch.randn(1, 3, 8, 8)))
    assert pairs["bn1"] == ("conv1",)
    assert pairs["layer2.0.bn2"] == ("layer2.0.conv2",)
    assert pairs["layer2.0.downsample.1"] == ("layer2.0.downsample.0",)
    assert len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_unsupported_architecture_raises():
    with pytest.raises(ExplainError, match="cannot canonize a Unsupported"):
        canonizer_for(Unsupported(), torch.randn(1, 3, 8, 8))
    with pytest.raises(ExplainError):
        canonizer_for(nn.Sequential(Unsupported()), torch.randn(1, 3, 8, 8))


def test_changed_outputs_raise():
    with pytest.raises(ExplainError, match="changed its outputs"):
        check_same_outputs(torch.zeros(2, 3), torch.full((2, 3), 0.1), nn.Identity())


class Spy(SequentialMergeBatchNorm):
    """A user's canonizer that records the models it is applied to."""

    applied: list[str] = []

    def apply(self, root_module):
        Spy.applied.append(type(root_module).__name__)
        return super().apply(root_module)


SPY = Spy()


def make_spy(model):  # a factory named by import path; takes the model, not the example
    Spy.applied.append(f"made for {type(model).__name__}")
    return [Spy()]


@pytest.mark.parametrize("given", [SPY, [SPY], f"{__name__}:SPY", f"{__name__}:make_spy"])
def test_a_user_canonizer_serves_an_unsupported_architecture(given):
    Spy.applied.clear()
    model, x = Unsupported().eval(), torch.randn(1, 3, 8, 8)
    assert all(isinstance(c, Spy) for c in canonizers_for(model, x, given))
    relevance = lrp(model, x, torch.tensor([1]), mean=(0.5,) * 3, std=(0.25,) * 3, canonizer=given)
    assert relevance.shape == (1, 3, 8, 8) and torch.isfinite(relevance).all()
    assert "Unsupported" in Spy.applied


def test_a_user_canonizer_replaces_the_built_in_one():
    model, x = resnet18(num_classes=5).eval(), torch.randn(1, 3, 32, 32)
    assert canonizers_for(model, x, []) == []
    assert len(canonizers_for(model, x)) == 1


@pytest.mark.parametrize("given, message", [
    (f"{__name__}:Unsupported", "expected a zennit Canonizer or a list of them, got a 'Unsupported'"),
    (f"{__name__}:MODELS", "got a 'dict'"),
    (f"{__name__}:no_such", "has no attribute 'no_such'"),
])
def test_a_bad_user_canonizer_raises(given, message):
    with pytest.raises(ExplainError, match=message):
        canonizers_for(Unsupported(), torch.randn(1, 3, 8, 8), given)


def test_fast_cnn_merges_its_norms_across_the_max_pool():
    from subdistill.models import create_model

    torch.manual_seed(0)
    model = _randomize_batch_norms(create_model("fast_cnn", 5, widths=[8, 16], stem_width=4))
    x = torch.randn(4, 3, 32, 32)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        reference = model(x)
        with canonized(model, x):
            assert all(torch.all(bn.running_var == 1) for bn in bns)  # all merged
            merged = model(x)
        restored = model(x)
    torch.testing.assert_close(merged, reference, rtol=1e-4, atol=1e-5)
    assert torch.equal(restored, reference)
    whitened = _randomize_batch_norms(create_model("fast_cnn", 5, widths=[8], stem="whiten"))
    whitened.init_from_data(x)
    with torch.no_grad():
        reference = whitened(x)
        with canonized(whitened, x):  # the whitening stem has no norm: the stages' are merged
            torch.testing.assert_close(whitened(x), reference, rtol=1e-4, atol=1e-5)
            assert all(torch.all(bn.running_var == 1) for bn in whitened.modules()
                       if isinstance(bn, nn.BatchNorm2d))
    with torch.no_grad():
        model.layer2.down[2].weight[0] = -1.0  # a flipped channel does not commute with the max
    with pytest.raises(ExplainError, match="layer2.down's batch norm has a scale <= 0"):
        canonizer_for(model, x)
