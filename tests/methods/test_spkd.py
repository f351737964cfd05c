import math

import pytest
import torch
from method_helpers import layer_step

import subdistill.methods.spkd  # noqa: F401  (registers the method)
from subdistill.methods.base import LayerPair, build_method
from subdistill.methods.spkd import similarity_matrix, spkd_loss

PAIR = LayerPair("t", "s", teacher_channels=6, student_channels=3,
                 teacher_size=(4, 4), student_size=(2, 2))


def _normalised_gram(rows):
    gram = [[sum(a * b for a, b in zip(x, y)) for y in rows] for x in rows]
    return [[g / math.sqrt(sum(v * v for v in row)) for g in row] for row in gram]


def test_matches_hand_formula():
    torch.manual_seed(0)
    t, s = torch.randn(3, 2, 2, 2), torch.randn(3, 4, 1, 1)
    gt = _normalised_gram(t.flatten(1).tolist())
    gs = _normalised_gram(s.flatten(1).tolist())
    expected = sum((gt[i][j] - gs[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    assert spkd_loss(t, s).item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_the_squared_frobenius_norm():
    torch.manual_seed(1)
    t, s = torch.randn(4, 6, 3, 3), torch.randn(4, 3, 2, 2)
    diff = similarity_matrix(t) - similarity_matrix(s)
    loss = spkd_loss(t, s)
    assert (2 * diff).pow(2).sum().item() / 16 == pytest.approx(4 * loss.item(), rel=1e-5)
    non_squared = diff.norm().item() / 16  # the reference code's (defective) value
    assert loss.item() == pytest.approx(diff.norm().item() ** 2 / 16, rel=1e-5)
    assert loss.item() != pytest.approx(non_squared, rel=1e-2)


def test_gradients_reach_the_student_with_a_no_grad_teacher():
    with torch.no_grad():
        teacher = torch.randn(4, 6, 4, 4)
    student = torch.randn(4, 3, 2, 2, requires_grad=True)
    spkd_loss(teacher, student).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_method_returns_kd_and_layer_terms():
    method = build_method("spkd", [PAIR], calibration="none")
    assert method.options == {"lambda": 3000.0, "temperature": 4.0, "calibration": "none"}
    t_map, s_map = torch.randn(4, 6, 4, 4), torch.randn(4, 3, 2, 2)
    terms = method(layer_step(t_map, s_map))
    assert set(terms) == {"kd", "layer/t"}
    assert terms["layer/t"].item() == pytest.approx(3000 * spkd_loss(t_map, s_map).item(),
                                                    rel=1e-5)
