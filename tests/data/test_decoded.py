import numpy as np
import pytest
import torch

from subdistill.data.decoded import decode_images

IMAGES = [np.full((3, h, w), i, dtype=np.uint8) for i, (h, w) in enumerate([(2, 3), (4, 1), (1, 1)])]


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))


def _decode(calls):
    def decode(i):
        calls.append(i)
        return IMAGES[i]
    return decode


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_images_of_any_size_round_trip(mode):
    images = decode_images(3, _decode([]), mode, "k")
    assert len(images) == 3
    for image, expected in zip(images, IMAGES):
        assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(expected))
    images[0][0, 0, 0] = 99  # items are copies
    assert images[0][0, 0, 0] == 0


def test_disk_cache_is_reused_and_rebuilt_when_damaged(tmp_path):
    calls: list[int] = []
    decode_images(3, _decode(calls), "disk", "k")
    decode_images(3, _decode(calls), "disk", "k")
    assert calls == [0, 1, 2]
    (data,) = (tmp_path / "cache").rglob("k.bin")
    data.write_bytes(data.read_bytes()[:-1])
    images = decode_images(3, _decode(calls), "disk", "k")
    assert calls == [0, 1, 2] * 2 and torch.equal(images[2], torch.from_numpy(IMAGES[2]))
    decode_images(2, _decode(calls), "disk", "k")  # another count: not these images
    assert calls[-2:] == [0, 1]
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_unwritable_cache_warns_and_keeps_images_in_memory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "file"))
    with pytest.warns(UserWarning, match="SUBDISTILL_CACHE"):
        images = decode_images(3, _decode([]), "disk", "k")
    assert torch.equal(images[1], torch.from_numpy(IMAGES[1]))
