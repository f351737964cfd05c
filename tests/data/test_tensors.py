import numpy as np
import pytest
import torch

from subdistill.data import TensorImageDataset
from subdistill.data.tensors import channel_stats
from subdistill.errors import DataError


def _uint8(n=30, channels=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, 4, 5), generator=generator, dtype=torch.uint8)


def test_channel_stats_match_torch():
    images = _uint8()
    mean, std = channel_stats(images, chunk=7)
    scaled = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), scaled.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64),
                               scaled.std(dim=(0, 2, 3), unbiased=False))


def test_uint8_images_are_normalised_with_computed_stats():
    images = _uint8()
    ds = TensorImageDataset(images, torch.arange(30) % 3)
    assert ds.classes == ["0", "1", "2"] and ds.image_shape == (2, 4, 5) and len(ds) == 30
    stacked = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.testing.assert_close(stacked.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(stacked.std(dim=(0, 2, 3), unbiased=False), torch.ones(2),
                               atol=1e-5, rtol=0)
    assert ds[4][1] == 1 and ds.targets.dtype == np.int64
    given = TensorImageDataset(images, [0] * 30, ["only"], mean=(0.5, 0.5), std=(0.5, 0.5))
    torch.testing.assert_close(given[0][0], images[0].float() / 127.5 - 1)


def test_float_images_are_used_as_given_without_stats():
    images = torch.randn(6, 3, 2, 2)
    ds = TensorImageDataset(images, [0, 1, 0, 1, 0, 1], ["cat", "dog"])
    assert torch.equal(ds[3][0], images[3]) and ds[3][1] == 1
    assert ds.mean == (0.0, 0.0, 0.0) and ds.std == (1.0, 1.0, 1.0)
    unit = torch.rand(6, 3, 2, 2)
    scaled = TensorImageDataset(unit, [0] * 6, mean=(0.5,) * 3, std=(0.25,) * 3)
    torch.testing.assert_close(scaled[0][0], (unit[0] - 0.5) / 0.25)
    assert TensorImageDataset(images, [0] * 6).fingerprint() != ds.fingerprint()


@pytest.mark.parametrize("images, labels, kwargs, message", [
    (torch.zeros(2, 4, 4, dtype=torch.uint8), [0, 1], {}, "uint8 or float"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.int32), [0, 1], {}, "uint8 or float"),
    (torch.zeros(2, 1, 4, 4), [0.0, 1.0], {}, "integers"),
    (torch.zeros(2, 1, 4, 4), [0, -1], {}, "labels range over -1..0"),
    (torch.zeros(2, 1, 4, 4), [0, 2], {"classes": ["a", "b"]}, "for 2 classes"),
    (torch.zeros(2, 1, 4, 4), [0, 1, 1], {}, "2 images but 3 labels"),
    (torch.zeros(2, 1, 4, 4), [0, 1], {"mean": (0.5,)}, "both mean and std"),
    (torch.zeros(2, 1, 4, 4), [0, 1], {"mean": (0.5, 0.5), "std": (1, 1)}, "2/2 entries for 1"),
])
def test_bad_tensors_are_one_line_data_errors(images, labels, kwargs, message):
    with pytest.raises(DataError, match=message) as err:
        TensorImageDataset(images, labels, **kwargs)
    assert "\n" not in str(err.value)
