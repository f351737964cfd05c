import pytest
import torch
from torch import nn

from subdistill.errors import ModelError
from subdistill.models import create_model


def test_stages_halve_the_resolution_and_logits_have_the_class_count():
    model = create_model("fast_cnn", num_classes=7, widths=[8, 16], stem_width=4)
    shapes = {}
    for name in ("stem", "layer1", "layer2"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert shapes == {"stem": (2, 4, 32, 32), "layer1": (2, 8, 16, 16), "layer2": (2, 16, 8, 8)}


def test_frozen_norm_scales_stay_one_while_shifts_learn():
    model = create_model("fast_cnn", num_classes=3, widths=[8], stem_width=4, norm_scales=False)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert any(not torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)


def test_bad_sizes_are_model_errors():
    with pytest.raises(ModelError, match="1 to 5 entries"):
        create_model("fast_cnn", num_classes=3, widths=[])
    with pytest.raises(ModelError, match="logit_scale"):
        create_model("fast_cnn", num_classes=3, logit_scale=0.0)
