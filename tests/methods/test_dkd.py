import math

import pytest
import torch
import torch.nn.functional as F

import subdistill.methods.dkd  # noqa: F401  (registers the method)
from subdistill.errors import ConfigError
from subdistill.methods.base import StepOutputs, build_method
from subdistill.methods.dkd import nckd_loss, tckd_loss, warmup_factor


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _hand_dkd(zs, zt, y, alpha, beta, temperature):
    tckd = nckd = 0.0
    for s_row, t_row, label in zip(zs, zt, y):
        ps = _softmax([v / temperature for v in s_row])
        pt = _softmax([v / temperature for v in t_row])
        tckd += _kl([pt[label], 1 - pt[label]], [ps[label], 1 - ps[label]])
        others = [c for c in range(len(s_row)) if c != label]
        nckd += _kl(_softmax([t_row[c] / temperature for c in others]),
                    _softmax([s_row[c] / temperature for c in others]))
    n = len(y)
    return temperature**2 * alpha * tckd / n, temperature**2 * beta * nckd / n


def test_matches_hand_formula():
    torch.manual_seed(0)
    zs, zt = torch.randn(3, 5) * 2, torch.randn(3, 5) * 2
    y = torch.tensor([0, 3, 4])
    tckd, nckd = _hand_dkd(zs.tolist(), zt.tolist(), y.tolist(), 1.0, 8.0, 2.0)
    assert tckd_loss(zs, zt, y, 2.0).item() == pytest.approx(tckd, rel=1e-5)
    assert 8 * nckd_loss(zs, zt, y, 2.0).item() == pytest.approx(nckd, rel=1e-5)


def test_published_decomposition_of_kd():
    """KD = TCKD + (1 − p_t^target) · NCKD at T = 1 (Zhao et al., eq. 5), per sample."""
    torch.manual_seed(1)
    zs, zt = torch.randn(4, 6) * 2, torch.randn(4, 6) * 2
    y = torch.tensor([1, 0, 5, 2])
    for i in range(4):
        s, t, label = zs[i:i + 1], zt[i:i + 1], y[i:i + 1]
        kd = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True,
                      reduction="batchmean")
        b_t = F.softmax(t, 1)[0, label].item()
        decomposed = tckd_loss(s, t, label) + (1 - b_t) * nckd_loss(s, t, label)
        assert decomposed.item() == pytest.approx(kd.item(), rel=1e-5)


def test_nckd_vanishes_when_non_target_distributions_match():
    zt = torch.tensor([[5.0, 1.0, 2.0, 0.5]])
    zs = zt.clone()
    zs[0, 0] = -3.0  # very different target probability, same non-target logits
    y = torch.tensor([0])
    assert nckd_loss(zs, zt, y).item() == pytest.approx(0.0, abs=1e-6)
    assert tckd_loss(zs, zt, y).item() > 0.1
    zs = zt + torch.tensor([[0.0, 0.7, 0.7, 0.7]])  # non-target logits shifted together
    assert nckd_loss(zs, zt, y, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_reach_the_student_with_a_no_grad_teacher():
    with torch.no_grad():
        teacher = torch.randn(4, 5)
    student = torch.randn(4, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    (tckd_loss(student, teacher, y) + 8 * nckd_loss(student, teacher, y)).backward()
    assert student.grad.abs().sum() > 0


def test_defaults_are_mdistillers_cifar_settings():
    method = build_method("dkd")
    assert method.options == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0,
                              "warmup": pytest.approx(20 / 240)}
    assert not method.uses_layers and list(method.parameters()) == []


@pytest.mark.parametrize("epoch, epochs", [(1, 240), (10, 240), (20, 240), (30, 240), (1, 12),
                                           (2, 3)])
def test_warmup_and_ce_follow_mdistillers_formula(epoch, epochs):
    """CE + min(epoch / warmup_epochs, 1) · (α·TCKD + β·NCKD), warm-up 20 of 240 epochs."""
    torch.manual_seed(epoch)
    zs, zt, y = torch.randn(6, 4) * 2, torch.randn(6, 4) * 2, torch.tensor([0, 1, 2, 3, 0, 1])
    terms = build_method("dkd")(StepOutputs(student_logits=zs, labels=y, teacher_logits=zt,
                                            epoch=epoch, epochs=epochs))
    ramp = min(epoch / (20 * epochs / 240), 1.0)
    tckd, nckd = _hand_dkd(zs.tolist(), zt.tolist(), y.tolist(), 1.0, 8.0, 4.0)
    assert set(terms) == {"ce", "tckd", "nckd"}
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(zs, y).item(), rel=1e-6)
    assert terms["tckd"].item() == pytest.approx(ramp * tckd, rel=1e-5)
    assert terms["nckd"].item() == pytest.approx(ramp * nckd, rel=1e-5)
    assert warmup_factor(epoch / epochs, 0.0) == 1.0


def test_authors_variant_has_no_ce_and_no_warmup():
    zs, zt, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    terms = build_method("dkd", temperature=1.0, ce_weight=0.0, warmup=0.0)(
        StepOutputs(student_logits=zs, labels=y, teacher_logits=zt, epoch=1, epochs=100))
    assert set(terms) == {"tckd", "nckd"}
    assert terms["nckd"].item() == pytest.approx(8 * nckd_loss(zs, zt, y, 1.0).item(), rel=1e-6)


def test_method_returns_weighted_terms():
    zs, zt, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    terms = build_method("dkd", alpha=2.0, beta=3.0, temperature=2.0, warmup=0.0)(
        StepOutputs(student_logits=zs, labels=y, teacher_logits=zt))
    assert set(terms) == {"tckd", "nckd", "ce"}
    assert terms["tckd"].item() == pytest.approx(2 * tckd_loss(zs, zt, y, 2.0).item(), rel=1e-6)
    assert terms["nckd"].item() == pytest.approx(3 * nckd_loss(zs, zt, y, 2.0).item(), rel=1e-6)


@pytest.mark.parametrize("options", [{"warmup": 1.5}, {"warmup": -0.1}, {"temperature": 0.0}])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        build_method("dkd", **options)
