import math

import pytest
import torch
from method_helpers import layer_step

import subdistill.methods.vkd  # noqa: F401  (registers the method)
from subdistill.methods.base import LayerPair, build_method
from subdistill.methods.vkd import vkd_loss

PAIR = LayerPair("t", "s", teacher_channels=6, student_channels=3,
                 teacher_size=(4, 4), student_size=(2, 2))


def _smooth_l1(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_matches_hand_formula():
    torch.manual_seed(0)
    method = build_method("vkd", [PAIR], calibration="none")
    t_map, s_map = torch.randn(2, 6, 4, 4) * 3, torch.randn(2, 3, 2, 2) * 3
    w = method.heads[0].weight.detach().tolist()  # (d, k)
    total = 0.0
    for b in range(2):
        s_bar = [s_map[b, c].mean().item() for c in range(3)]
        t_bar = [t_map[b, c].mean().item() for c in range(6)]
        mu = sum(t_bar) / 6
        sd = math.sqrt(sum((v - mu) ** 2 for v in t_bar) / 6 + 1e-5)
        for j in range(6):
            projected = sum(w[j][c] * s_bar[c] for c in range(3))
            total += _smooth_l1(projected - (t_bar[j] - mu) / sd)
    expected = total / 12
    assert method.layer_loss(0, t_map, s_map).item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_student_and_projection_with_a_no_grad_teacher():
    method = build_method("vkd", [PAIR])
    with torch.no_grad():
        teacher = torch.randn(4, 6, 4, 4)
    student = torch.randn(4, 3, 2, 2, requires_grad=True)
    method.layer_loss(0, teacher, student).backward()
    assert student.grad.abs().sum() > 0
    grads = [p.grad for p in method.heads.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_projection_stays_orthogonal_after_training_steps():
    torch.manual_seed(0)
    method = build_method("vkd", [PAIR])
    # default weight decay (0.01): zeroed torch's non-square "householder" parametrisation
    opt = torch.optim.AdamW(method.parameters(), lr=0.1)
    teacher, student = torch.randn(8, 6, 4, 4), torch.randn(8, 3, 2, 2)
    for _ in range(5):
        opt.zero_grad()
        method.layer_loss(0, teacher, student).backward()
        opt.step()
    w = method.heads[0].weight.detach()
    assert w.shape == (6, 3)  # (d, k) with k < d: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(3), atol=1e-5, rtol=0)


def test_wide_projection_has_orthonormal_rows():
    pair = LayerPair("t", "s", teacher_channels=3, student_channels=5,
                     teacher_size=(2, 2), student_size=(2, 2))
    w = build_method("vkd", [pair]).heads[0].weight.detach()
    assert w.shape == (3, 5)
    torch.testing.assert_close(w @ w.T, torch.eye(3), atol=1e-5, rtol=0)


def test_loss_is_smooth_l1_to_the_layer_normed_teacher():
    projected, teacher = torch.randn(4, 6), torch.randn(4, 6) * 5 + 2
    target = (teacher - teacher.mean(1, keepdim=True)) / teacher.std(1, unbiased=False, keepdim=True)
    expected = torch.nn.functional.smooth_l1_loss(projected, target)
    assert vkd_loss(projected, teacher).item() == pytest.approx(expected.item(), rel=1e-4)


def test_method_returns_kd_and_layer_terms():
    method = build_method("vkd", [PAIR], calibration="none")
    t_map, s_map = torch.randn(4, 6, 4, 4), torch.randn(4, 3, 2, 2)
    terms = method(layer_step(t_map, s_map))
    assert set(terms) == {"kd", "layer/t"}
    assert terms["layer/t"].item() == pytest.approx(
        100 * method.layer_loss(0, t_map, s_map).item(), rel=1e-5)
