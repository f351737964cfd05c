import math

import pytest
import torch
from method_helpers import layer_step

import subdistill.methods.at  # noqa: F401  (registers the method)
from subdistill.losses import kd_loss
from subdistill.methods.at import attention_loss, attention_map
from subdistill.methods.base import LayerPair, build_method

# student map is the larger one here: it is pooled 4x4 -> 2x2
PAIR = LayerPair("t", "s", teacher_channels=3, student_channels=2, teacher_size=(2, 2),
                 student_size=(4, 4))


def _maps(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 2, 4, 4, generator=g)


def _hand_attention(f):
    """Per-sample list of normalised attention values, positions row-major."""
    out = []
    for n in range(f.shape[0]):
        q = [sum(f[n, c, i, j].item() ** 2 for c in range(f.shape[1])) / f.shape[1]
             for i in range(f.shape[2]) for j in range(f.shape[3])]
        norm = math.sqrt(sum(v * v for v in q))
        out.append([v / norm for v in q])
    return out


def test_golden_loss_by_hand():
    teacher, student = _maps()
    pooled = torch.zeros(2, 2, 2, 2)
    for i in range(2):
        for j in range(2):
            pooled[:, :, i, j] = student[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(dim=(2, 3))
    qs, qt = _hand_attention(pooled), _hand_attention(teacher)
    diffs = [(a - b) ** 2 for n in range(2) for a, b in zip(qs[n], qt[n])]
    expected = sum(diffs) / len(diffs)
    method = build_method("at", [PAIR])
    assert method.layer_loss(0, teacher, student).item() == pytest.approx(expected, rel=1e-5)


def test_maps_have_unit_norm_per_sample():
    q = attention_map(torch.randn(5, 3, 4, 6))
    assert q.shape == (5, 24)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(5))
    assert (q >= 0).all()


def test_invariant_to_positive_scaling_of_a_sample():
    teacher, student = _maps(1)
    scaled = student.clone()
    scaled[0] *= 7.5
    method = build_method("at", [PAIR])
    assert method.layer_loss(0, teacher, scaled).item() == pytest.approx(
        method.layer_loss(0, teacher, student).item(), rel=1e-5)


def test_gradients_reach_student_without_teacher_gradients():
    method = build_method("at", [PAIR])
    assert list(method.parameters()) == []
    with torch.no_grad():
        teacher = torch.randn(2, 3, 2, 2)
    student = torch.randn(2, 2, 4, 4, requires_grad=True)
    method.layer_loss(0, teacher, student).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_method_terms():
    method = build_method("at", [PAIR], **{"lambda": 10.0})
    teacher, student = _maps(2)
    step = layer_step(teacher, student)
    terms = method(step)
    assert set(terms) == {"kd", "layer/t"}
    expected = 10 * attention_loss(torch.nn.functional.avg_pool2d(student, 2), teacher)
    assert terms["layer/t"].item() == pytest.approx(expected.item(), rel=1e-5)
    kd = kd_loss(step.student_logits, step.teacher_logits, 4.0).item()
    assert terms["kd"].item() == pytest.approx(kd, rel=1e-6)
