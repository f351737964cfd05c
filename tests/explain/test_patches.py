import pytest

from subdistill.explain.patches import default_patch_size, grid_shape, shapley_patch_size


@pytest.mark.parametrize("side, patch", [(32, 4), (224, 28)])
def test_shapley_players_are_an_8x8_grid_at_any_size(side, patch):
    assert shapley_patch_size(side, side) == patch
    assert grid_shape(side, side, patch) == (8, 8)


def test_shapley_patches_keep_the_recorded_size_below_72_pixels():
    # digits (8 px), MNIST-like (28 px) and CIFAR (32 px) results were made with these
    for side in range(1, 72):
        assert shapley_patch_size(side, side) == default_patch_size(side, side)
    assert default_patch_size(224, 224) == 8  # pooling and flipping keep the authors' grid
