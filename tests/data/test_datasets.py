import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from subdistill.data import (
    ArrayImageDataset,
    Subtask,
    SubtaskDataset,
    list_datasets,
    load_dataset,
    register_dataset,
)
from subdistill.data.cifar import CIFAR10_CLASSES
from subdistill.data.fashion_mnist import read_idx
from subdistill.data.registry import DATASETS
from subdistill.errors import ConfigError, DataError, SubtaskError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_registry_lists_all_datasets():
    assert {"digits", "cifar10-jpeg", "fashion-mnist", "cifar10", "cifar100",
            "imagefolder"} <= set(list_datasets())


def test_registry_errors(tmp_path):
    with pytest.raises(DataError, match="Did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("digits", "val")
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("imagefolder", root=tmp_path, image_sise=32)


def test_register_dataset(monkeypatch, digits):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))  # restored on teardown
    register_dataset("mine")(lambda split, root, download, scale=1: digits[0])
    assert load_dataset("mine", scale=2) is digits[0]


def test_digits_split(digits):
    train, test = digits
    assert (len(train), len(test)) == (1437, 360)
    assert train.image_shape == (1, 8, 8) and train.family == "digits"
    assert train.classes == [str(d) for d in range(10)]
    assert train.targets.dtype == np.int64
    counts = np.bincount(train.targets) + np.bincount(test.targets)
    assert counts.sum() == 1797
    np.testing.assert_allclose(np.bincount(test.targets) / counts, 0.2, atol=0.02)
    again = load_dataset("digits", "test")
    np.testing.assert_array_equal(again.targets, test.targets)
    assert torch.equal(again.images, test.images)


def test_digits_is_normalised(digits):
    train = digits[0]
    images = torch.stack([train[i][0] for i in range(len(train))])
    assert images.dtype == torch.float32
    assert abs(images.mean().item()) < 1e-3
    assert abs(images.std().item() - 1) < 1e-3
    assert isinstance(train[0][1], int) and train[0][1] == train.targets[0]


def test_array_dataset_normalisation_and_checks():
    images = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    ds = ArrayImageDataset(images, [1], ["a", "b"], (0.5, 0.2), (0.5, 0.1))
    image, label = ds[0]
    expected = torch.tensor([[[-1.0, 1.0]], [[0.0, 2.0]]])
    torch.testing.assert_close(image, expected)
    assert label == 1 and ds.image_shape == (2, 1, 2) and len(ds) == 1
    with pytest.raises(DataError, match="uint8"):
        ArrayImageDataset(images.float(), [1], ["a", "b"], (0.5, 0.2), (0.5, 0.1))
    with pytest.raises(DataError, match="labels"):
        ArrayImageDataset(images, [1, 0], ["a", "b"], (0.5, 0.2), (0.5, 0.1))


def test_subtask_dataset_view(digits):
    train = digits[0]
    subtask = Subtask((5, 3), ("5", "3"))
    indices = np.flatnonzero(np.isin(train.targets, [3, 5]))[:20]
    view = SubtaskDataset(train, indices, subtask.label_map)
    assert view.classes == ["3", "5"]
    np.testing.assert_array_equal(view.targets, (train.targets[indices] == 5).astype(int))
    image, label = view[3]
    assert torch.equal(image, train[int(indices[3])][0])
    assert label == int(train.targets[indices[3]] == 5)
    assert (view.mean, view.std, view.image_shape) == (train.mean, train.std, train.image_shape)
    assert view.family is None and len(view) == 20
    with pytest.raises(SubtaskError, match="outside the subtask"):
        SubtaskDataset(train, np.flatnonzero(train.targets == 4)[:2], subtask.label_map)


@pytest.mark.parametrize("name", ["cifar10-jpeg", "fashion-mnist", "cifar10", "cifar100",
                                  "imagefolder"])
def test_missing_root_raises_data_error(name, tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset(name, "test", root=tmp_path)


# --- cifar10-jpeg -----------------------------------------------------------------------------

COLOURS = {"truck": (250, 10, 10), "airplane": (10, 250, 10), "cat": (10, 10, 250)}


def _jpeg(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("test/", b"")
        for name, data in members:
            archive.writestr(name, data)


@pytest.fixture
def tiny_zip(tmp_path):
    members = [(f"test/{cls}/{i:04d}.jpg", _jpeg(colour))
               for cls, colour in COLOURS.items() for i in (1, 0)]
    _write_zip(tmp_path / "cifar10-jpeg" / "test.zip", members)
    return tmp_path


def test_cifar10_jpeg_tiny_zip(tiny_zip, tmp_path):
    ds = load_dataset("cifar10-jpeg", "test", root=tiny_zip)
    assert ds.classes == list(CIFAR10_CLASSES) and ds.family == "cifar10"
    np.testing.assert_array_equal(ds.targets, [0, 0, 3, 3, 9, 9])  # airplane, cat, truck
    assert ds.images.shape == (6, 3, 32, 32) and ds.images.dtype == torch.uint8
    for image, cls in zip(ds.images, ["airplane"] * 2 + ["cat"] * 2 + ["truck"] * 2):
        mean_colour = image.float().mean(dim=(1, 2))
        torch.testing.assert_close(mean_colour, torch.tensor(COLOURS[cls]).float(), atol=6,
                                   rtol=0)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    # root may also point at the folder holding the zips
    same = load_dataset("cifar10-jpeg", "test", root=tiny_zip / "cifar10-jpeg")
    assert torch.equal(same.images, ds.images)


def test_cifar10_jpeg_uses_a_valid_cache(tiny_zip, tmp_path, monkeypatch):
    first = load_dataset("cifar10-jpeg", "test", root=tiny_zip)
    import subdistill.data.zip_images as zip_images

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(zip_images, "_decode", no_decoding)
    assert torch.equal(load_dataset("cifar10-jpeg", "test", root=tiny_zip).images, first.images)
    monkeypatch.undo()
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))
    (cache,) = (tmp_path / "cache").rglob("*.npy")
    cache.write_bytes(b"garbage")
    assert torch.equal(load_dataset("cifar10-jpeg", "test", root=tiny_zip).images, first.images)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cifar10_jpeg_rejects_foreign_layout(tmp_path):
    _write_zip(tmp_path / "test.zip", [("test/zebra/0000.jpg", _jpeg((0, 0, 0)))])
    with pytest.raises(DataError, match="zebra"):
        load_dataset("cifar10-jpeg", "test", root=tmp_path)


def test_cifar10_jpeg_real_test_split():
    if not (SHARED_DATA / "cifar10-jpeg" / "test.zip").exists():
        pytest.skip("shared CIFAR-10 JPEG data is absent")
    ds = load_dataset("cifar10-jpeg", "test", root=SHARED_DATA)
    assert len(ds) == 10000 and ds.image_shape == (3, 32, 32)
    np.testing.assert_array_equal(np.bincount(ds.targets), [1000] * 10)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and label == 0
    assert -3 < image.min() < image.max() < 3


# --- fashion-mnist ----------------------------------------------------------------------------

def _idx(array, dtype_code=0x08):
    header = bytes([0, 0, dtype_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_read_idx(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx(array)))
    (tmp_path / "a").write_bytes(_idx(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    (tmp_path / "short").write_bytes(_idx(array)[:-1])
    with pytest.raises(DataError, match="bytes"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx(images))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(5))))
    ds = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    np.testing.assert_array_equal(ds.targets, np.arange(5))
    assert ds.classes[0] == "T-shirt/top" and ds.family == "fashion-mnist"
    with pytest.raises(DataError, match="train-images"):
        load_dataset("fashion-mnist", "train", root=tmp_path)


def test_fashion_mnist_real_test_split():
    if not (SHARED_DATA / "fashion-mnist").exists():
        pytest.skip("shared Fashion-MNIST data is absent")
    ds = load_dataset("fashion-mnist", "test", root=SHARED_DATA)
    assert len(ds) == 10000 and ds.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(np.bincount(ds.targets), [1000] * 10)
    assert ds[0][0].shape == (1, 28, 28)


# --- imagefolder ------------------------------------------------------------------------------

def _png_folder(root, classes, sizes=((10, 12), (12, 10))):
    for c, colour in classes.items():
        (root / c).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, colour).save(root / c / f"{i}.png")


def test_imagefolder(tmp_path):
    _png_folder(tmp_path / "train", {"b_cls": (255, 0, 0), "a_cls": (0, 0, 255)})
    _png_folder(tmp_path / "test", {"b_cls": (255, 0, 0), "a_cls": (0, 0, 255)}, sizes=[(9, 9)])
    train = load_dataset("imagefolder", "train", root=tmp_path, resize=8, image_size=6)
    test = load_dataset("imagefolder", "test", root=tmp_path, resize=8, image_size=6)
    assert train.classes == ["a_cls", "b_cls"] and train.family is None
    np.testing.assert_array_equal(train.targets, [0, 0, 1, 1])
    assert len(test) == 2 and test.image_shape == (3, 6, 6)
    image, label = train[2]
    assert image.shape == (3, 6, 6) and label == 1
    mean, std = torch.tensor(train.mean), torch.tensor(train.std)
    torch.testing.assert_close(image[:, 0, 0], (torch.tensor([1.0, 0, 0]) - mean) / std)


def test_imagefolder_detects_imagenet(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    for i in range(1000):
        folder = tmp_path / "val" / f"n{i:08d}"
        folder.mkdir(parents=True)
        (folder / "x.png").write_bytes(buffer.getvalue())
    ds = load_dataset("imagefolder", "test", root=tmp_path)
    assert ds.family == "imagenet" and len(ds) == 1000
    assert Subtask.resolve("retriever", ds.classes, ds.family).names[0] == "n00000205"
