import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import TinyCNN
from subdistill.analysis.rank import (
    dimensions_needed,
    k_grid,
    rank_curve,
    reconstruct,
    reconstructed,
    subtask_scores,
)
from subdistill.subspace.fit import accumulate_statistics


@pytest.mark.parametrize("basis", ["subdistill", "pca", "gradpca", "prca", "random", "identity"])
def test_the_full_rank_reconstruction_is_the_layer_itself(basis):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.randn(32, 3, 8, 8)
    stats = accumulate_statistics(model, DataLoader(TensorDataset(x), batch_size=16),
                                  ["stage2"], positions=None)
    full = stats["stage2"].basis(basis, None)
    with torch.no_grad():
        expected = model(x)
        with reconstructed(model, "stage2", full.U, full.mean):
            got = model(x)
        after = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(after, expected)  # the hook is gone


def test_tokens_keep_their_class_token_and_vectors_work():
    U = torch.eye(4)[:, :2].double()
    tokens = torch.randn(2, 1 + 9, 4)  # a class token and a 3 x 3 grid
    out = reconstruct(tokens, U, torch.zeros(4))
    assert torch.equal(out[:, 0], tokens[:, 0]) and torch.equal(out[:, 1:, 2:], torch.zeros(2, 9, 2))
    assert torch.equal(reconstruct(tokens[:, 0], U, torch.zeros(4))[:, :2], tokens[:, 0, :2])


class TwoDimensionalTask(nn.Module):
    """Three classes read off the first three of 16 channels (logit c = channel c): the
    decision lives in the 2-dimensional plane of their differences; the other 13 channels
    carry loud noise the head ignores."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()
        self.head = nn.Linear(16, 3, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[:, :3] = torch.eye(3)

    def forward(self, x):
        return self.head(self.layer(x))


def test_subdistill_finds_a_two_dimensional_subtask_that_pca_misses():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(6000) % 3
    x = 5 * torch.randn(6000, 16, generator=generator)  # loud, irrelevant
    x[:, :3] = 0.3 * torch.randn(6000, 3, generator=generator)
    x[torch.arange(6000), y] += 1.0  # the class: the largest of the first three channels
    model = TwoDimensionalTask()
    stats = accumulate_statistics(model, DataLoader(TensorDataset(x), batch_size=1000), ["layer"],
                                  positions=None)
    batches = [(x, y)]
    reference = subtask_scores(model, batches)[0]
    needed = {method: dimensions_needed(rank_curve(model, "layer", stats["layer"].basis(
        method, None), batches, k_grid(16)), reference) for method in ("subdistill", "pca")}
    assert needed["subdistill"] == 2
    assert needed["pca"] == 16


def test_k_grid_and_dimensions_needed():
    assert k_grid(1) == [1] and k_grid(8) == [1, 2, 4, 8] and k_grid(20) == [1, 2, 4, 8, 16, 20]
    curve = [(1, 0.5, 0.0), (2, 0.89, 0.0), (4, 0.91, 0.0), (8, 0.9, 0.0)]
    assert dimensions_needed(curve, 0.9) == 2  # within one point of 0.9
    assert dimensions_needed(curve, 0.99) is None
