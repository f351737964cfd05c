import pytest
import torch
from torch import nn

from subdistill.errors import ModelError
from subdistill.models import LayerInfo, create_model, format_layer_table, layer_shapes


class Toy(nn.Module):
    """Reuses one activation, has an unused module and a submodule returning a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.act = nn.ReLU()
        self.split = Split()
        self.unused = nn.Linear(1, 1)
        self.head = nn.Linear(4, 2)
        self.seen = []

    def forward(self, x):
        x = self.act(self.body(x))
        x = self.act(x)
        a, _ = self.split(x)
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.head(a.mean((2, 3)))


class Split(nn.Module):
    def forward(self, x):
        return x, x


def test_lists_tensor_outputs_in_execution_order():
    infos = layer_shapes(Toy(), torch.randn(2, 3, 5, 5))
    assert infos == [
        LayerInfo("body", "Sequential", (2, 4, 5, 5)),
        LayerInfo("body.0", "Conv2d", (2, 4, 5, 5)),
        LayerInfo("body.1", "BatchNorm2d", (2, 4, 5, 5)),
        LayerInfo("act", "ReLU", (2, 4, 5, 5), calls=2),
        LayerInfo("head", "Linear", (2, 2)),
    ]  # root, the tuple-returning `split` and the never-called `unused` are left out


def test_eval_and_no_grad_during_probe_and_modes_restored():
    model = Toy().train()
    model.body[1].eval()  # mixed modes must survive
    before = {name: m.training for name, m in model.named_modules()}
    stats = model.body[1].running_mean.clone()
    layer_shapes(model, torch.randn(2, 3, 5, 5))
    assert model.seen == [(False, False)]
    assert {name: m.training for name, m in model.named_modules()} == before
    assert torch.equal(model.body[1].running_mean, stats)


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_removed_and_mode_restored_on_error():
    model = Toy().train()
    with pytest.raises(ModelError, match="cannot run on a 5x5x5 input"):
        layer_shapes(model, torch.randn(2, 5, 5, 5))  # wrong channel count
    assert _hook_count(model) == 0
    assert all(m.training for m in model.modules())
    layer_shapes(model, torch.randn(1, 3, 4, 4))
    assert _hook_count(model) == 0


def test_resnet_stage_shapes():
    infos = {
        info.path: info
        for info in layer_shapes(create_model("resnet8x4", 10), torch.randn(1, 3, 32, 32))
    }
    assert infos["layer1"].shape == (1, 64, 32, 32)
    assert infos["layer3"].shape == (1, 256, 8, 8)
    assert infos["layer2.0.downsample.0"].type == "Conv2d"
    assert infos["fc"].shape == (1, 10)
    assert next(iter(infos)) == "conv1"


def test_format_layer_table():
    infos = [
        LayerInfo("layer1", "Sequential", (1, 64, 32, 32)),
        LayerInfo("act", "ReLU", (1, 4), calls=2),
    ]
    lines = format_layer_table(infos).splitlines()
    assert lines == [
        "path    type        output shape",
        "layer1  Sequential  1x64x32x32",
        "act     ReLU x2     1x4",
    ]
    assert format_layer_table([]) == "path  type  output shape"
