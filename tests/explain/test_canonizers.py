from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from zennit.layer import Sum

from subdistill.explain.canonizers import (
    canonizer_for,
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
    with torch.no_grad():
        reference = model(x)
        with canonized(model, x):
            assert any(isinstance(m, Sum) for m in model.modules())  # residuals made visible
            bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            assert all(torch.all(bn.running_var == 1) for bn in bns)  # all merged
            merged = model(x)
        restored = model(x)
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
