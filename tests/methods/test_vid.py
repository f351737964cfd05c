import math

import pytest
import torch
from method_helpers import layer_step

import subdistill.methods.vid  # noqa: F401  (registers the method)
from subdistill.errors import ConfigError
from subdistill.losses import kd_loss
from subdistill.methods.base import LayerPair, build_method
from subdistill.methods.vid import VARIANCE_EPS, vid_loss

PAIR = LayerPair("t", "s", teacher_channels=2, student_channels=3, teacher_size=(4, 4),
                 student_size=(2, 2))


def _maps(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 2, generator=g)


def test_initial_variance_is_five():
    method = build_method("vid", [PAIR])
    torch.testing.assert_close(method.heads[0].variance, torch.full((2,), 5.0))
    with pytest.raises(ConfigError, match="init_variance"):
        build_method("vid", [PAIR], init_variance=0.0)


def test_golden_loss_by_hand():
    method = build_method("vid", [PAIR])
    head = method.heads[0]
    w1 = [[0.5, -1.0, 0.2], [1.0, 0.3, -0.4]]
    w2 = [[1.0, -0.5], [0.7, 0.2]]
    w3 = [[-0.3, 1.2], [0.8, 0.5]]
    alpha = [0.3, -1.2]
    with torch.no_grad():
        for conv, w in zip(head.regressor[::2], (w1, w2, w3)):
            conv.weight.copy_(torch.tensor(w)[:, :, None, None])
        head.alpha.copy_(torch.tensor(alpha))
    teacher, student = _maps()

    def matvec(w, x, relu):
        y = [sum(wi * xi for wi, xi in zip(row, x)) for row in w]
        return [max(v, 0.0) for v in y] if relu else y

    var = [math.log(1 + math.exp(a)) + VARIANCE_EPS for a in alpha]
    terms = []
    for n in range(2):
        for i in range(2):
            for j in range(2):
                s = [student[n, k, i, j].item() for k in range(3)]
                mu = matvec(w3, matvec(w2, matvec(w1, s, True), True), False)
                for c in range(2):
                    t = teacher[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean().item()
                    terms.append(0.5 * ((t - mu[c]) ** 2 / var[c] + math.log(var[c])))
    expected = sum(terms) / len(terms)
    assert method.layer_loss(0, teacher, student).item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_student_regressor_and_variance_without_teacher_gradients():
    torch.manual_seed(0)  # a head whose ReLUs are not all dead on these few inputs
    method = build_method("vid", [PAIR])
    with torch.no_grad():
        teacher = torch.randn(2, 2, 4, 4)
    student = torch.randn(2, 3, 2, 2, requires_grad=True)
    method.layer_loss(0, teacher, student).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    params = dict(method.named_parameters())
    assert len(params) == 4
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


def test_variance_is_a_registered_learned_parameter():
    method = build_method("vid", [PAIR])
    alpha = method.heads[0].alpha
    assert any(p is alpha for p in method.parameters())
    assert "heads.0.alpha" in method.state_dict()
    before = method.heads[0].variance.detach().clone()
    optimizer = torch.optim.AdamW(method.parameters(), lr=0.1)
    teacher, student = _maps(1)
    method.layer_loss(0, teacher, student).backward()
    optimizer.step()
    assert not torch.allclose(method.heads[0].variance, before)
    method.to(torch.float64)
    assert method.heads[0].alpha.dtype == torch.float64  # moves with .to() like any parameter


def test_method_terms():
    method = build_method("vid", [PAIR], **{"lambda": 10.0})
    teacher, student = _maps(2)
    step = layer_step(teacher, student)
    terms = method(step)
    assert set(terms) == {"kd", "layer/t"}
    head = method.heads[0]
    expected = 10 * vid_loss(head.regressor(student), head.variance,
                             torch.nn.functional.avg_pool2d(teacher, 2))
    assert terms["layer/t"].item() == pytest.approx(expected.item(), rel=1e-5)
    kd = kd_loss(step.student_logits, step.teacher_logits, 4.0).item()
    assert terms["kd"].item() == pytest.approx(kd, rel=1e-6)


def test_loss_and_gradients_equal_the_elementwise_formula():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    variance = (torch.rand(3, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    teacher = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    v = variance[:, None, None]
    expected = (0.5 * ((teacher - mean).pow(2) / v + v.log())).mean()
    loss = vid_loss(mean, variance, teacher)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    for got, want in zip(torch.autograd.grad(loss, (mean, variance)),
                         torch.autograd.grad(expected, (mean, variance)), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)


def test_regressor_runs_channels_last_with_the_nchw_loss_and_gradients():
    torch.manual_seed(4)
    pair = LayerPair("t", "s", teacher_channels=6, student_channels=4, teacher_size=(5, 5),
                     student_size=(5, 5))
    head = build_method("vid", [pair]).heads[0].double()
    teacher = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    student = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    layouts = []
    head.regressor[0].register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    loss = head(teacher, student)
    assert layouts == [True]
    w1, w2, w3 = (conv.weight for conv in head.regressor[::2])
    conv = torch.nn.functional.conv2d
    nchw_mean = conv(conv(conv(student, w1).relu(), w2).relu(), w3)
    expected = vid_loss(nchw_mean, head.variance, teacher)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    params = (student, *head.parameters())
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
