import pytest
import torch
from method_helpers import layer_step

from subdistill.errors import BasisError, ConfigError
from subdistill.losses import subspace_loss
from subdistill.methods import LayerPair, build_method, describe_methods
from subdistill.methods.subdistill import ChannelNormalization, SubspaceHead
from subdistill.subspace import relevant_basis
from subdistill.subspace.basis import Basis


def _basis(d=6, k=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(300, d, generator=generator, dtype=torch.float64) * 2 + 1
    c = torch.randn(300, d, generator=generator, dtype=torch.float64)
    return relevant_basis(a, c, k=k)


def test_standardize_uses_batch_statistics_in_training_and_running_mean_in_eval():
    norm = ChannelNormalization(3, "standardize")
    x = torch.randn(8, 3, 4, 4) * 5 + 2
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(norm.running_mean, 0.1 * x.mean(dim=(0, 2, 3)))
    norm.eval()
    torch.testing.assert_close(norm(x), x - norm.running_mean[:, None, None])  # no division


def test_center_only_subtracts_the_mean():
    norm = ChannelNormalization(2, "center")
    x = torch.randn(4, 2, 3, 3) * 7
    torch.testing.assert_close(norm(x), x - x.mean(dim=(0, 2, 3))[:, None, None])
    with pytest.raises(ConfigError):
        ChannelNormalization(2, "whiten")


def test_head_matches_hand_formula():
    basis = _basis()
    head = SubspaceHead(basis, 3, normalization="none")
    teacher = torch.randn(2, 6, 4, 4)
    student = torch.randn(2, 3, 2, 2)
    pooled = torch.nn.functional.avg_pool2d(teacher, 2)
    t = pooled.permute(0, 2, 3, 1).reshape(-1, 6).double()
    target = (t - basis.mean) @ basis.U
    q = head.rotation.weight.detach().double()
    pred = student.permute(0, 2, 3, 1).reshape(-1, 3).double() @ q.T
    expected = ((pred - target) ** 2).sum(1).mean() / basis.energy
    assert head(teacher, student).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("normalization", ["standardize", "center", "none"])
@pytest.mark.parametrize("scale", ["learned", "none"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_loss_from_moments_equals_the_loss_of_the_prediction(normalization, scale,
                                                                        channels_last):
    # the training path never forms the prediction; its loss, gradients and running mean must
    # be those of subspace_loss(s · Q · n(S), Uᵀ(T − μ)) computed on the maps
    torch.manual_seed(0)
    head = SubspaceHead(_basis(d=6, k=3), 3, normalization=normalization, scale=scale)
    with torch.no_grad():
        if head.log_scale is not None:
            head.log_scale.fill_(0.3)
    explicit = SubspaceHead(_basis(d=6, k=3), 3, normalization=normalization, scale=scale)
    explicit.load_state_dict(head.state_dict())
    teacher = torch.randn(4, 6, 4, 4) * 3 + 1
    student = torch.randn(4, 3, 4, 4) * 2 - 1
    if channels_last:
        teacher, student = (x.to(memory_format=torch.channels_last) for x in (teacher, student))
    s1, s2 = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    moments_loss = head(teacher, s1)
    prediction = explicit.prediction(s2)
    reference = subspace_loss(prediction, explicit.target(teacher), explicit.energy)
    torch.testing.assert_close(moments_loss, reference, rtol=1e-5, atol=1e-6)
    moments_loss.backward()
    reference.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-4, atol=1e-6)
    for (name, p1), p2 in zip(head.named_parameters(), explicit.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(head.norm.running_mean, explicit.norm.running_mean)


def test_energy_normalisation_can_be_switched_off():
    basis = _basis()
    on, off = SubspaceHead(basis, 3), SubspaceHead(basis, 3, energy_norm=False)
    off.load_state_dict({**on.state_dict(), "energy": off.energy})
    t, s = torch.randn(4, 6, 2, 2), torch.randn(4, 3, 2, 2)
    assert off(t, s).item() == pytest.approx(on(t, s).item() * basis.energy, rel=1e-5)


def test_rotation_stays_orthogonal_after_training_steps():
    head = SubspaceHead(_basis(), 3)
    opt = torch.optim.AdamW(head.parameters(), lr=0.1)
    for _ in range(20):
        loss = head(torch.randn(8, 6, 2, 2), torch.randn(8, 3, 2, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = head.rotation.weight.detach()
    torch.testing.assert_close(q @ q.T, torch.eye(3), atol=1e-5, rtol=0)


def test_head_refuses_a_basis_of_the_wrong_width():
    with pytest.raises(BasisError, match="k=3.*4 channels"):
        SubspaceHead(_basis(k=3), 4)


def _pair():
    return LayerPair("t", "s", 6, 3, (4, 4), (2, 2))


def test_method_terms_and_gradients():
    method = build_method("subdistill", [_pair()], **{"lambda": 10.0})
    method.bases = {"t": _basis()}
    method.heads = torch.nn.ModuleList([SubspaceHead(method.bases["t"], 3)])
    student_map = torch.randn(4, 3, 2, 2, requires_grad=True)
    teacher_map = torch.randn(4, 6, 4, 4)
    outputs = layer_step(teacher_map, student_map)
    student_logits = outputs.student_logits.requires_grad_()
    terms = method(outputs)
    assert set(terms) == {"kd", "layer/t"}
    head_loss = method.heads[0](teacher_map, student_map)
    assert terms["layer/t"].item() == pytest.approx(10 * head_loss.item(), rel=1e-5)
    sum(terms.values()).backward()
    assert student_map.grad is not None and student_logits.grad is not None
    assert all(p.grad is not None for p in method.parameters())


def test_options_are_validated():
    with pytest.raises(ConfigError, match="Did you mean 'lambda'"):
        build_method("subdistill", [_pair()], lamda=3)
    with pytest.raises(ConfigError, match="must be a number"):
        build_method("subdistill", [_pair()], temperature="hot")
    with pytest.raises(ConfigError, match="basis must be one of"):
        build_method("subdistill", [_pair()], basis="ica")
    with pytest.raises(ConfigError, match="layer pair"):
        build_method("subdistill", [])
    with pytest.raises(ConfigError, match="Did you mean 'kd'"):
        build_method("kdd")


def test_registry_lists_methods_with_descriptions():
    methods = describe_methods()
    assert {"subdistill", "kd", "student-only"} <= set(methods)
    assert all(cls.description for cls in methods.values())


def test_learned_scale_starts_where_the_prediction_has_the_targets_energy():
    basis = _basis(d=6, k=3)
    head = SubspaceHead(basis, 3)
    assert head.log_scale.exp().item() == pytest.approx((basis.energy / 3) ** 0.5, rel=1e-6)
    assert SubspaceHead(basis, 3, scale="none").log_scale is None
    assert SubspaceHead(basis, 3, normalization="center").log_scale.item() == 0.0


def _fit_head(scale, steps=600):
    """Train a head and a free student map on a target of energy E = 25 k; the final loss."""
    torch.manual_seed(0)
    d, k = 6, 3
    u, _ = torch.linalg.qr(torch.randn(d, k, dtype=torch.float64))
    sigma = torch.tensor([3.0, 5.0, 6.5])  # E = Σσ² = 75.25 ≠ k
    z = torch.randn(32, k, 2, 2)
    z = (z - z.mean(dim=(0, 2, 3), keepdim=True)) / z.std(dim=(0, 2, 3), unbiased=False,
                                                          keepdim=True)  # exactly E = Σσ²
    teacher_map = torch.einsum("dk,bkhw->bdhw", u.float(), sigma[None, :, None, None] * z) + 1.0
    basis = Basis(U=u, mean=torch.ones(d, dtype=torch.float64), energy=float((sigma**2).sum()),
                  eigenvalues=torch.ones(k, dtype=torch.float64), method="subdistill")
    head = SubspaceHead(basis, k, scale=scale)
    student_map = torch.nn.Parameter(torch.randn(32, k, 2, 2))
    opt = torch.optim.Adam([student_map, *head.parameters()], lr=0.05)
    for _ in range(steps):
        loss = head(teacher_map, student_map)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head(teacher_map, student_map).item(), basis.energy / k


def test_the_learned_scale_lets_the_loss_reach_zero():
    """With the authors' head (standardised prediction, no scale) the energy-normalised loss
    cannot fall below (1 − √(k/E))²; with the learned scale it goes to ~0."""
    learned, ratio = _fit_head("learned")
    authors, _ = _fit_head("none")
    floor = (1 - ratio ** -0.5) ** 2
    assert learned < 0.01
    assert authors >= floor - 1e-3 and floor > 0.5


def test_scale_option_is_validated():
    with pytest.raises(ConfigError, match="scale must be one of"):
        build_method("subdistill", [_pair()], scale="fixed")


@pytest.mark.parametrize("scale, message", [(0.0, "layer 'stage1': cannot build"),
                                            (2e-3, "teacher layer 'stage1' is nearly constant")])
def test_a_degenerate_teacher_layer_is_named(scale, message):
    from torch.utils.data import TensorDataset

    from conftest import TinyCNN
    from subdistill.errors import BasisError
    from subdistill.training import distill

    torch.manual_seed(0)
    teacher = TinyCNN((6, 8))
    with torch.no_grad():  # stage 1 outputs 1000 everywhere, plus (scale) a whisper of signal
        conv = teacher.stage1[0]
        conv.weight.mul_(scale)
        conv.bias.fill_(1000.0)
    x, y = torch.randn(24, 3, 8, 8), torch.arange(24) % 3
    with pytest.raises(BasisError, match=message):
        distill(teacher, TinyCNN((4, 4)), TensorDataset(x, y), TensorDataset(x, y),
                pairs={"stage1": "stage1"}, epochs=1, batch_size=8, progress=False)
