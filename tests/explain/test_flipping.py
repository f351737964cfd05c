import pytest
import torch
from torch import nn

from subdistill.explain.analysis import shared_scale_auc
from subdistill.explain.attribution import attribute
from subdistill.explain.errors import ExplainError
from subdistill.explain.flipping import flip_curves, removal_counts

SIZE, PATCH = 8, 2  # a 4x4 grid of patches


def _two_patch_model() -> nn.Module:
    """Logit 0 reads patch (0, 0) with weight 2 and patch (2, 3) with weight 1; logit 1 is 0."""
    weight = torch.zeros(2, 1, SIZE, SIZE, dtype=torch.float64)
    weight[0, 0, 0:2, 0:2] = 2.0
    weight[0, 0, 4:6, 6:8] = 1.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 2, bias=False)).double()
    model[1].weight.data = weight.flatten(1)
    return model


def _images() -> torch.Tensor:
    images = 0.1 * torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0),
                              dtype=torch.float64)
    images[:, :, 0:2, 0:2] += 1.0
    images[:, :, 4:6, 6:8] += 1.0
    return images


def test_true_relevance_order_drops_the_gap_fastest():
    model, x, y = _two_patch_model(), _images(), torch.zeros(4, dtype=torch.long)
    true = attribute(model, x, y, "ig")  # exact for a linear model: weight * input
    random = torch.rand(true.shape, generator=torch.Generator().manual_seed(1), dtype=true.dtype)
    aucs = {name: shared_scale_auc(flip_curves(model, x, y, h, patch=PATCH, batch_size=3).gaps)
            for name, h in {"true": true, "random": random, "reversed": -true}.items()}
    assert torch.all(aucs["true"] < aucs["random"])
    assert torch.all(aucs["random"] < aucs["reversed"])
    curves = flip_curves(model, x, y, true, patch=PATCH)
    assert curves.gaps.shape == (4, 17) and curves.removed[-1] == 1
    # After the two evidence patches are gone the gap stays at its floor.
    torch.testing.assert_close(curves.gaps[:, 2:], curves.gaps[:, 2:3].expand(-1, 15))


def test_all_patches_removed_gives_the_mean_colour_image():
    model, x, y = _two_patch_model(), _images(), torch.zeros(4, dtype=torch.long)
    gaps = flip_curves(model, x, y, torch.randn(4, SIZE, SIZE), patch=PATCH, steps=4).gaps
    flat = x.mean((2, 3), keepdim=True).expand_as(x)
    torch.testing.assert_close(gaps[:, 0], model(x)[:, 0].detach())
    torch.testing.assert_close(gaps[:, -1], model(flat)[:, 0].detach())


def test_removal_counts_and_auc_definition():
    assert removal_counts(4).tolist() == [0, 1, 2, 3, 4]
    assert removal_counts(16, steps=4).tolist() == [0, 4, 8, 12, 16]
    with pytest.raises(ExplainError):
        removal_counts(4, steps=5)
    gaps = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]])
    auc = shared_scale_auc(gaps)  # mean gap over the mean initial gap of correct images (1.5)
    torch.testing.assert_close(auc[:2], torch.tensor([1 / 1.5, 1 / 1.5]))
    assert torch.isnan(auc[2])


def test_heatmap_shape_checked():
    with pytest.raises(ExplainError):
        flip_curves(_two_patch_model(), _images(), torch.zeros(4, dtype=torch.long),
                    torch.zeros(4, 4, 4))
