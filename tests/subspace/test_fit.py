import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from subdistill.errors import BasisError, LayerNotFoundError, NonFiniteError
from subdistill.subspace import relevant_basis
from subdistill.subspace.fit import accumulate_statistics, fit_subspaces, logit_margin


def _by_hand(model, x, layer):
    """Activations and margin gradients of ``layer`` at all positions, collected manually."""
    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.update(out=o))
    model.eval()
    logits = model(x)
    handle.remove()
    top2 = logits.topk(2, dim=1).values
    grad, = torch.autograd.grad((top2[:, 0] - top2[:, 1]).sum(), store["out"])
    flat = lambda t: t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # noqa: E731
    return flat(store["out"]), flat(grad), store["out"].detach()


def _signed_close(u, v, atol=1e-6):
    signs = torch.sign((u * v).sum(0))
    torch.testing.assert_close(u, v * signs, atol=atol, rtol=0)


def test_logit_margin():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
    torch.testing.assert_close(logit_margin(logits), torch.tensor([1.0, 5.0]))


def test_fit_matches_hand_collected_basis(tiny_cnn, tiny_images):
    loader = DataLoader(tiny_images, batch_size=7)  # several uneven batches
    bases = fit_subspaces(tiny_cnn, loader, {"stage1": 4, "stage2": 5}, positions=None)
    x = tiny_images.tensors[0]
    for layer, k in (("stage1", 4), ("stage2", 5)):
        a, c, _ = _by_hand(tiny_cnn, x, layer)
        expected = relevant_basis(a.double(), c.double(), k=k)
        _signed_close(bases[layer].U, expected.U)
        torch.testing.assert_close(bases[layer].mean, expected.mean, atol=1e-6, rtol=1e-6)
        assert bases[layer].energy == pytest.approx(expected.energy, rel=1e-5)


def test_sampled_positions_are_seeded_and_distinct(tiny_cnn, tiny_images):
    loader = DataLoader(tiny_images, batch_size=16)
    s1 = accumulate_statistics(tiny_cnn, loader, ["stage1"], positions=5, seed=3)
    s2 = accumulate_statistics(tiny_cnn, loader, ["stage1"], positions=5, seed=3)
    s3 = accumulate_statistics(tiny_cnn, loader, ["stage1"], positions=5, seed=4)
    assert s1["stage1"].pairs.count == 40 * 5
    torch.testing.assert_close(s1["stage1"].pairs.sum_aa, s2["stage1"].pairs.sum_aa)
    assert not torch.allclose(s1["stage1"].pairs.sum_aa, s3["stage1"].pairs.sum_aa)


def test_energy_is_measured_on_the_compared_pooled_map(tiny_cnn, tiny_images):
    loader = DataLoader(tiny_images, batch_size=40)
    basis = fit_subspaces(tiny_cnn, loader, {"stage1": 3}, positions=None,
                          compared_sizes={"stage1": (2, 2)})["stage1"]
    _, _, maps = _by_hand(tiny_cnn, tiny_images.tensors[0], "stage1")
    pooled = F.adaptive_avg_pool2d(maps, 2).permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).double()
    projected = (pooled - basis.mean) @ basis.U
    assert basis.energy == pytest.approx(float(projected.pow(2).sum(1).mean()), rel=1e-6)
    assert "pooled to 2x2" in basis.metadata["energy_on"]


def test_teacher_is_left_untouched(tiny_cnn, tiny_images):
    tiny_cnn.train()
    state = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    fit_subspaces(tiny_cnn, DataLoader(tiny_images, batch_size=10), ["stage2"])
    assert tiny_cnn.training
    assert all(p.grad is None and p.requires_grad for p in tiny_cnn.parameters())
    for key, value in tiny_cnn.state_dict().items():
        torch.testing.assert_close(value, state[key])  # BatchNorm statistics unchanged too


def test_errors(tiny_cnn, tiny_images):
    loader = DataLoader(tiny_images, batch_size=10)
    with pytest.raises(LayerNotFoundError, match="stage1"):
        fit_subspaces(tiny_cnn, loader, ["stage_1"])
    with pytest.raises(BasisError, match="k=9"):
        fit_subspaces(tiny_cnn, loader, {"stage2": 9})
    with pytest.raises(BasisError, match="no batches"):
        fit_subspaces(tiny_cnn, [], ["stage2"])


def test_non_finite_activations_name_the_layer_and_batch(tiny_cnn, tiny_images):
    x = tiny_images.tensors[0].clone()
    x[25] = float("nan")
    loader = DataLoader(torch.utils.data.TensorDataset(x, tiny_images.tensors[1]), batch_size=10)
    with pytest.raises(NonFiniteError, match="activations or gradients at teacher layer .stage1. in batch 3"):
        fit_subspaces(tiny_cnn, loader, ["stage1"])


def test_a_basis_from_fewer_vectors_than_dimensions_warns(tiny_cnn, tiny_images, caplog):
    few = DataLoader(torch.utils.data.Subset(tiny_images, range(3)), batch_size=3)
    with caplog.at_level("WARNING", logger="subdistill.subspace.fit"):
        bases = fit_subspaces(tiny_cnn, few, {"stage1": 2, "stage2": 2}, positions=1)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "layer 'stage2': basis fitted from 3 vectors for d = 8 dimensions" in caplog.text
    assert "rank-limited" in caplog.text
    assert bases["stage2"].metadata["rank_limited"] == "true"
    assert bases["stage2"].metadata["samples"] == "3"
    caplog.clear()
    with caplog.at_level("WARNING", logger="subdistill.subspace.fit"):
        bases = fit_subspaces(tiny_cnn, DataLoader(tiny_images, batch_size=40), {"stage2": 2})
    assert not caplog.records and bases["stage2"].metadata["rank_limited"] == "false"
