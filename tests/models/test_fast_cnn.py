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


def test_whitening_stem_whitens_the_training_patches():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 12, 12, generator=generator)
    images[:, 1] += 0.8 * images[:, 0]  # correlated channels
    images[:, 2] *= 3.0
    model = create_model("fast_cnn", num_classes=3, widths=[8], stem="whiten")
    assert model.stem[0].out_channels == 24 and not model.stem[0].weight.requires_grad
    model.init_from_data(images)
    features = nn.functional.conv2d(images, model.stem[0].weight)  # the stem before its GELU
    half = features[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = half.T @ half / half.shape[0]
    torch.testing.assert_close(covariance, torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(features[:, 12:], -features[:, :12])
    assert torch.equal(model.stem[0].bias, torch.zeros(24))


def test_identity_init_passes_the_first_channels_through():
    model = create_model("fast_cnn", num_classes=3, widths=[8, 4], stem_width=4,
                         identity_init=True, norm_momentum=0.4)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(model.layer1.down[0](x)[:, :4], x)
    torch.testing.assert_close(model.layer2.down[0](torch.randn(2, 8, 3, 3))[:, :4].shape,
                               (2, 4, 3, 3))
    assert all(m.momentum == 0.4 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_bad_stem_options_are_model_errors():
    with pytest.raises(ModelError, match="stem must be one of"):
        create_model("fast_cnn", num_classes=3, stem="patchify")
    with pytest.raises(ModelError, match="leave stem_width unset"):
        create_model("fast_cnn", num_classes=3, stem="whiten", stem_width=32)
    with pytest.raises(ModelError, match="norm_momentum"):
        create_model("fast_cnn", num_classes=3, norm_momentum=1.5)
