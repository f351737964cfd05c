import math

import pytest
import torch

import subdistill.methods.ce_kd  # noqa: F401  (registers the method)
from subdistill.methods.base import StepOutputs, build_method


def _softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def test_matches_hand_formula():
    torch.manual_seed(0)
    zs, zt, y = torch.randn(3, 4) * 3, torch.randn(3, 4) * 3, torch.tensor([2, 0, 3])
    ce = kd = 0.0
    for s_row, t_row, label in zip(zs.tolist(), zt.tolist(), y.tolist()):
        ce -= math.log(_softmax(s_row)[label])
        ps, pt = _softmax([v / 4 for v in s_row]), _softmax([v / 4 for v in t_row])
        kd += 16 * sum(a * math.log(a / b) for a, b in zip(pt, ps))
    terms = build_method("ce+kd", ce_weight=0.5, kd_weight=2.0)(
        StepOutputs(student_logits=zs, labels=y, teacher_logits=zt))
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx(0.5 * ce / 3, rel=1e-5)
    assert terms["kd"].item() == pytest.approx(2.0 * kd / 3, rel=1e-5)


def test_defaults_and_gradients_with_a_no_grad_teacher():
    method = build_method("ce+kd")
    assert method.options == {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0}
    assert not method.uses_layers
    with torch.no_grad():
        teacher = torch.randn(4, 3)
    student = torch.randn(4, 3, requires_grad=True)
    terms = method(StepOutputs(student_logits=student, labels=torch.tensor([0, 1, 2, 0]),
                               teacher_logits=teacher))
    sum(terms.values()).backward()
    assert student.grad.abs().sum() > 0
