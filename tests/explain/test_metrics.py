import pytest
import torch

from subdistill.explain.errors import ExplainError
from subdistill.explain.metrics import cosine, patch_pool, pearson, topk_overlap
from subdistill.explain.patches import default_patch_size, patch_ids

MAPS = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
ONES = torch.ones(3, dtype=torch.float64)


def test_default_patch_size():
    assert [default_patch_size(s, s) for s in (8, 28, 32, 64, 224, 512)] == [1, 3, 4, 8, 8, 8]


@pytest.mark.parametrize("patch", [1, 2, 3, 8])
def test_patch_pool_sums_each_patch(patch):
    pooled = patch_pool(MAPS, patch)
    ids = patch_ids(8, 8, patch).flatten()
    expected = torch.zeros(3, int(ids.max()) + 1, dtype=MAPS.dtype).index_add_(
        1, ids, MAPS.flatten(1))
    torch.testing.assert_close(pooled.flatten(1), expected)


@pytest.mark.parametrize("similarity", [pearson, cosine])
def test_similarity_extremes_and_scale_invariance(similarity):
    torch.testing.assert_close(similarity(MAPS, MAPS), ONES)
    torch.testing.assert_close(similarity(MAPS, -MAPS), -ONES)
    torch.testing.assert_close(similarity(MAPS, 3.5 * MAPS), ONES)
    other = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(similarity(MAPS, other), similarity(0.1 * MAPS, 7 * other))


def test_pearson_ignores_offsets_cosine_does_not():
    torch.testing.assert_close(pearson(MAPS, MAPS + 5), ONES)
    assert torch.all(cosine(MAPS, MAPS + 5) < 0.9)


def test_topk_overlap():
    assert torch.equal(topk_overlap(MAPS, MAPS, 5), ONES)
    a = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    b = torch.tensor([[4.0, 1.0, 3.0, 2.0]])
    assert topk_overlap(a, b, 2).tolist() == [0.5]
    assert topk_overlap(a, -a, 2).tolist() == [0.0]
    with pytest.raises(ExplainError):
        topk_overlap(a, b, 5)


def test_shape_mismatch_raises():
    with pytest.raises(ExplainError):
        pearson(MAPS, MAPS[:2])
