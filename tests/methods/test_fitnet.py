import pytest
import torch
from method_helpers import layer_step

import subdistill.methods.fitnet  # noqa: F401  (registers the method)
from subdistill.errors import ConfigError
from subdistill.losses import kd_loss
from subdistill.methods.base import LayerPair, build_method
from subdistill.methods.fitnet import hint_loss

PAIR = LayerPair("t", "s", teacher_channels=3, student_channels=2, teacher_size=(4, 4),
                 student_size=(2, 2))


def _maps(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 2, 2, 2, generator=g)


def _set_regressor(method, weight, bias):
    conv = method.regressors[0][0]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight).view(3, 2, 1, 1))
        conv.bias.copy_(torch.tensor(bias))


def test_golden_loss_by_hand():
    method = build_method("fitnet", [PAIR])
    w, b = [[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], [0.1, -0.2, 0.3]
    _set_regressor(method, w, b)
    teacher, student = _maps()
    total, count = 0.0, 0
    for n in range(2):
        for i in range(2):
            for j in range(2):
                for c in range(3):
                    block = teacher[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].tolist()
                    t = sum(sum(row) for row in block) / 4  # adaptive avg pool 4x4 -> 2x2
                    r = b[c] + sum(w[c][k] * student[n, k, i, j].item() for k in range(2))
                    total += (r - t) ** 2
                    count += 1
    assert method.layer_loss(0, teacher, student).item() == pytest.approx(total / count, rel=1e-5)


def test_relu_variant_differs_and_regresses_non_negative_values():
    plain, relu = build_method("fitnet", [PAIR]), build_method("fitnet", [PAIR], relu=True)
    for m in (plain, relu):
        _set_regressor(m, [[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], [0.1, -0.2, 0.3])
    teacher, student = _maps()
    assert (relu.regressors[0](student) >= 0).all()
    assert (plain.regressors[0](student) < 0).any()
    assert relu.layer_loss(0, teacher, student).item() != pytest.approx(
        plain.layer_loss(0, teacher, student).item())
    assert relu.layer_loss(0, teacher, student).item() >= 0


def test_gradients_reach_student_and_regressor_without_teacher_gradients():
    method = build_method("fitnet", [PAIR], relu=True)
    with torch.no_grad():
        teacher = torch.randn(2, 3, 4, 4)
    student = torch.randn(2, 2, 2, 2, requires_grad=True)
    method.layer_loss(0, teacher, student).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    params = list(method.parameters())
    assert len(params) == 2 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_method_terms():
    method = build_method("fitnet", [PAIR], **{"lambda": 10.0})
    teacher, student = _maps(1)
    step = layer_step(teacher, student)
    terms = method(step)
    assert set(terms) == {"kd", "layer/t"}
    pooled = torch.nn.functional.avg_pool2d(teacher, 2)
    expected = 10 * hint_loss(method.regressors[0](student), pooled)
    assert terms["layer/t"].item() == pytest.approx(expected.item(), rel=1e-5)
    kd = kd_loss(step.student_logits, step.teacher_logits, 4.0).item()
    assert terms["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert method.options["lambda"] == 10.0 and method.options["temperature"] == 4.0
    with pytest.raises(ConfigError, match="true or false"):
        build_method("fitnet", [PAIR], relu="yes")


@pytest.mark.parametrize("reduction", ["channel-mean", "channel-sum"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_loss_from_moments_equals_the_regressed_map_loss(reduction, channels_last):
    # in training, the hint loss is computed without forming the regressed map; its value and
    # gradients (student map, weight, bias) must be those of the map's loss
    torch.manual_seed(0)
    method = build_method("fitnet", [PAIR], reduction=reduction).train()
    teacher = torch.randn(4, 3, 4, 4) * 2 + 1
    student = torch.randn(4, 2, 4, 4) - 0.5
    if channels_last:
        teacher, student = (x.to(memory_format=torch.channels_last) for x in (teacher, student))
    s1, s2 = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    from_moments = method.layer_loss(0, teacher, s1)
    regressor = method.regressors[0]
    grads_moments = torch.autograd.grad(from_moments, [s1, *regressor.parameters()])
    reference = hint_loss(regressor(s2), teacher, reduction)
    grads_reference = torch.autograd.grad(reference, [s2, *regressor.parameters()])
    torch.testing.assert_close(from_moments, reference, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads_moments, grads_reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
