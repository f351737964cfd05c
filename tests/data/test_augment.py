import pytest
import torch
import torch.nn.functional as F

from subdistill.data import build_augment, list_augments
from subdistill.data.augment import Cutout, RandomResizedCrop
from subdistill.errors import ConfigError


@pytest.fixture
def batch():
    return torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", [n for n in list_augments() if n != "none"])
def test_augments_keep_shape_and_change_images(name, batch):
    torch.manual_seed(0)
    out = build_augment(name, 32)(batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert not torch.equal(out, batch)


@pytest.mark.parametrize("name", [n for n in list_augments() if n != "none"])
def test_augments_are_reproducible_under_manual_seed(name, batch):
    augment = build_augment(name, 32)
    torch.manual_seed(1)
    a = augment(batch)
    torch.manual_seed(1)
    b = augment(batch)
    torch.manual_seed(2)
    c = augment(batch)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", [n for n in list_augments() if n != "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_augments_return_nchw_strides(name, channels):
    # a one-channel crop once came back with channel stride 1: the student then ran channels_last
    out = build_augment(name, 8)(torch.randn(4, channels, 8, 8))
    assert out.stride() == (channels * 64, 64, 8, 1)


def test_none_and_unknown_names():
    assert build_augment("none", 32) is None
    with pytest.raises(ConfigError, match="Did you mean 'crop-flip'"):
        build_augment("crop_flip", 32)


def test_crop_is_a_window_of_the_zero_padded_image(batch):
    torch.manual_seed(0)
    out = build_augment("crop", 32)(batch)
    padded = F.pad(batch, (4, 4, 4, 4))
    offsets = []
    for i in range(len(batch)):
        found = [(t, left) for t in range(9) for left in range(9)
                 if torch.equal(out[i], padded[i, :, t:t + 32, left:left + 32])]
        assert found, f"sample {i} is not a 4-pixel-padded crop"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # offsets are drawn per sample
    assert build_augment("crop", 8).pad == 1 and build_augment("crop", 224).pad == 28


def test_translate_is_a_window_of_the_mirrored_image(batch):
    torch.manual_seed(0)
    out = build_augment("translate-flip", 32)(batch)
    padded = F.pad(batch, (2, 2, 2, 2), mode="reflect")
    for i in range(len(batch)):
        windows = [padded[i, :, t:t + 32, left:left + 32] for t in range(5) for left in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    # no flat zero margin as with the zero-padded crop
    assert not any(torch.equal(o[:, :, :1], torch.zeros_like(o[:, :, :1])) for o in out)


def test_flip_flips_some_samples(batch):
    torch.manual_seed(0)
    out = build_augment("flip", 32)(batch)
    flipped = [torch.equal(o, b.flip(-1)) for o, b in zip(out, batch)]
    kept = [torch.equal(o, b) for o, b in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_resized_crop_of_the_whole_image_is_the_identity(batch):
    torch.testing.assert_close(RandomResizedCrop(scale=(1, 1), ratio=(1, 1))(batch), batch)


def test_resized_crop_box_size_and_position():
    ramp = torch.arange(16.0).expand(8, 1, 16, 16)  # value = column index
    torch.manual_seed(0)
    out = RandomResizedCrop(scale=(0.25, 0.25), ratio=(1, 1))(ramp)  # 8x8 boxes
    steps = out[..., 2:-2].diff(dim=-1)
    torch.testing.assert_close(steps, torch.full_like(steps, 0.5))  # 8 columns -> 16
    lefts = out[:, 0, 0, 8] - 0.5 * 8.5 + 0.5  # box left = value - (8.5 * 0.5 - 0.5)
    assert lefts.min() >= 0 and lefts.max() <= 8
    torch.testing.assert_close(lefts, lefts.round())
    assert len(set(lefts.tolist())) > 1


def test_resized_crop_boxes_follow_scale_and_ratio():
    size = 32
    cols = torch.arange(float(size)).expand(size, size)
    ramps = torch.stack([cols, cols.T]).expand(256, 2, size, size)  # column and row index
    torch.manual_seed(0)
    out = RandomResizedCrop()(ramps)
    # Box size in pixels from the slope between two central output pixels.
    width = (out[:, 0, 16, 19] - out[:, 0, 16, 12]) / 7 * size
    height = (out[:, 1, 19, 16] - out[:, 1, 12, 16]) / 7 * size
    area = width * height / size**2
    assert area.min() > 0.06 and area.max() <= 1 + 1e-5
    assert area.max() > 0.8 and area.min() < 0.2
    ratio = width / height
    assert ratio.min() > 0.7 and ratio.max() < 1.4


def test_cutout_zeroes_one_clipped_square_per_sample(batch):
    torch.manual_seed(3)
    out = Cutout(16)(batch + 10.0)  # no pixel is zero before
    zeroed = (out == 0).all(dim=1)  # (B, H, W): the square is cut in every channel
    assert ((out == 0) == zeroed[:, None]).all()
    for mask in zeroed:
        rows, cols = mask.any(dim=1).nonzero()[:, 0], mask.any(dim=0).nonzero()[:, 0]
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16  # clipped at the border at most to half
        assert mask.sum() == len(rows) * len(cols)  # one axis-aligned rectangle
        assert (rows.diff() == 1).all() and (cols.diff() == 1).all()
    kept = ~zeroed[:, None].expand_as(out)
    assert torch.equal(out[kept], (batch + 10.0)[kept])
