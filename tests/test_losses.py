import math

import pytest
import torch

from subdistill.losses import channel_squared_error, kd_loss, subspace_loss


def test_kd_loss_matches_hand_formula():
    zs = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    zt = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    t = 4.0
    expected = 0.0
    for s_row, t_row in zip(zs.tolist(), zt.tolist()):
        ps = [math.exp(v / t) for v in s_row]
        pt = [math.exp(v / t) for v in t_row]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = t * t * expected / 2
    assert abs(kd_loss(zs, zt, t).item() - expected) < 1e-6


def test_kd_loss_is_zero_for_identical_logits():
    z = torch.randn(5, 4)
    assert kd_loss(z, z).abs().item() < 1e-6


def test_subspace_loss_sums_coordinates_and_averages_positions():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.ones(2, 3, 2, 2)
    assert subspace_loss(pred, target).item() == 3.0
    assert subspace_loss(pred, target, 6.0).item() == 0.5


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (3, 4)])
def test_channel_squared_error_matches_the_elementwise_formula(shape):
    g = torch.Generator().manual_seed(0)
    prediction = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(shape[1], generator=g, dtype=torch.float64)
    dims = (0, *range(2, len(shape)))
    fused = channel_squared_error(prediction, target)
    expected = (target - prediction).square().sum(dim=dims)
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=0)
    grads = torch.autograd.grad((weights * fused).sum(), (prediction, target))
    expected_grads = torch.autograd.grad((weights * expected).sum(), (prediction, target))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
