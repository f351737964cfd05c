import logging

import pytest
import torch
import torchvision
from torch import nn

from subdistill.explain.attribution import attribute, box_bounds
from subdistill.explain.errors import ExplainError
from subdistill.explain.target import logit_gap
from subdistill.models.cifar_resnet import cifar_resnet
from subdistill.models.mobile import mobile_student
from subdistill.models.restricted import RestrictedTeacher

NORM = {"mean": (0.5, 0.4, 0.3), "std": (0.25, 0.2, 0.2)}


def _images(n: int = 3, size: int = 8, dtype=torch.float64) -> torch.Tensor:
    """Images inside the box of NORM (pixel values in [0, 1])."""
    pixels = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=dtype)
    mean = torch.tensor(NORM["mean"], dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(NORM["std"], dtype=dtype).view(1, -1, 1, 1)
    return (pixels - mean) / std


def _bias_free_net() -> nn.Sequential:
    """Weights scaled up so that zennit's 1e-6 stabilizers are negligible against the outputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 16, bias=False), nn.ReLU(),
        nn.Linear(16, 5, bias=False),
    ).double()
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.weight.data *= 10
    return net


def test_box_bounds_are_normalised_pixel_range():
    low, high = box_bounds((0.5, 0.25), (0.25, 0.5))
    assert low.flatten().tolist() == [-2.0, -0.5]
    assert high.flatten().tolist() == [2.0, 1.5]


def test_lrp_conserves_the_gap_on_a_bias_free_relu_net():
    # ZBox (first conv), Gamma (conv), Epsilon (dense) all conserve relevance without biases.
    net, x, y = _bias_free_net(), _images(), torch.tensor([0, 3, 4])
    heatmaps = attribute(net, x, y, "lrp", **NORM)
    assert heatmaps.shape == (3, 8, 8)
    torch.testing.assert_close(heatmaps.sum((1, 2)), logit_gap(net(x), y).detach(),
                               rtol=1e-6, atol=1e-9)


def test_lrp_of_restricted_teacher_explains_subtask_gap():
    teacher, x = RestrictedTeacher(_bias_free_net(), [1, 2, 4]), _images()
    y = torch.tensor([0, 1, 2])
    heatmaps = attribute(teacher, x, y, "lrp", batch_size=2, **NORM)
    torch.testing.assert_close(heatmaps.sum((1, 2)), logit_gap(teacher(x), y).detach(),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("build", [
    lambda: cifar_resnet(4, depth=8, widths=(4, 8, 8)),
    lambda: mobile_student(4, widths=(4, 8), blocks_per_stage=2, expansion=2),
])
def test_lrp_conserves_through_canonized_residuals_and_pooling(build):
    # Fresh BatchNorms carry no bias; with a bias-free head the whole network is bias-free, so
    # relevance is conserved only if additions and pooling get proportional (Norm) rules
    # (up to zennit's 1e-6 stabilizers against outputs of about 0.5).
    torch.manual_seed(0)
    model = build().double().eval()
    nn.init.zeros_(model.fc.bias)
    x, y = _images(2, 16), torch.tensor([1, 2])
    reference = model(x).detach()
    heatmaps = attribute(model, x, y, "lrp", **NORM)
    torch.testing.assert_close(heatmaps.sum((1, 2)), logit_gap(reference, y), rtol=1e-3, atol=0)
    assert torch.equal(model(x).detach(), reference)  # canonizers and hooks removed


def _bias_free_torchvision(name: str) -> nn.Module:
    """A random torchvision network without biases whose activations keep their scale: the
    BatchNorm variances of one batch, zero BatchNorm means and shifts, bias-free heads (the
    squeeze-excitation gates keep theirs: they scale, they add nothing)."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=4).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 32, 32, dtype=torch.float64))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.zeros_(m.running_mean)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model.eval()


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_lrp_conserves_through_torchvision_mobile_blocks(name):
    # Conserved only if the residual additions are Sum modules, the pooling a module and the
    # squeeze-excitation gates pass the relevance of the gated map on unchanged.
    model, x, y = _bias_free_torchvision(name), _images(1, 32), torch.tensor([2])
    gap = logit_gap(model(x), y).detach()
    heatmap = attribute(model, x, y, "lrp", **NORM)
    assert heatmap.shape == (1, 32, 32)
    torch.testing.assert_close(heatmap.sum((1, 2)), gap, rtol=1e-3, atol=0)


def test_lrp_leaves_training_mode_alone():
    model = cifar_resnet(4, depth=8, widths=(4, 8, 8)).train()
    attribute(model, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), "lrp", **NORM)
    assert model.training and model.bn1.training


def test_integrated_gradients_completeness():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.Tanh(), nn.Linear(16, 2))
    model = model.double()
    x, y = _images(4), torch.tensor([0, 1, 1, 0])
    heatmaps = attribute(model, x, y, "ig", internal_batch_size=16)
    expected = logit_gap(model(x), y) - logit_gap(model(torch.zeros_like(x)), y)
    torch.testing.assert_close(heatmaps.sum((1, 2)), expected.detach(), rtol=1e-4, atol=1e-6)


def test_shapley_patches_efficiency_and_patch_constant_maps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 3)).double()
    x, y = _images(2), torch.tensor([0, 2])
    heatmaps = attribute(model, x, y, "svs", patch=4, n_samples=3)
    expected = logit_gap(model(x), y) - logit_gap(model(torch.zeros_like(x)), y)
    torch.testing.assert_close(heatmaps.sum((1, 2)), expected.detach(), rtol=1e-4, atol=1e-5)
    patch = heatmaps[:, :4, :4]
    assert torch.allclose(patch, patch[:, :1, :1].expand_as(patch))


def test_shapley_cost_is_logged_and_is_samples_times_patches_plus_one(caplog):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3)).double()
    rows = []
    net.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    x, y = _images(2, 16), torch.tensor([0, 2])
    with caplog.at_level(logging.INFO, logger="subdistill.explain.attribution"):
        attribute(net, x, y, "svs", n_samples=2)  # 2-px patches: an 8x8 grid at 16 px
    assert "2 samples x 64 patches of 2 px + 1 = 129 forwards per image, 2 images" in caplog.text
    assert sum(rows) == 2 * 129


def test_bad_method_and_architecture_raise():
    x, y = torch.randn(1, 3, 8, 8), torch.tensor([0])
    with pytest.raises(ExplainError, match="unknown attribution method"):
        attribute(nn.Identity(), x, y, "gradcam")
    with pytest.raises(ExplainError, match="mean/std"):
        attribute(nn.Identity(), x, y, "lrp", mean=(0.5,), std=(0.2,))
    with pytest.raises(ExplainError, match="labels"):
        attribute(nn.Identity(), x, torch.tensor([0, 1]), "ig")

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    with pytest.raises(ExplainError, match="cannot canonize"):
        attribute(Custom(), x, y, "lrp", **NORM)


def test_lrp_explains_a_restricted_fast_cnn_teacher():
    from subdistill.models import create_model

    torch.manual_seed(0)
    teacher = RestrictedTeacher(create_model("fast_cnn", 10, widths=[8, 16], stem_width=4,
                                             norm_scales=False).double().eval(), [1, 2, 4])
    x, y = _images(2, 16), torch.tensor([0, 2])
    heatmaps = attribute(teacher, x, y, "lrp", **NORM)
    assert heatmaps.shape == (2, 16, 16) and torch.isfinite(heatmaps).all()
    assert heatmaps.abs().sum() > 0
