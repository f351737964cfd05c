import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.mnist as tv_mnist
import torchvision.datasets.utils as tv_utils
from PIL import Image
from torchvision.datasets import CIFAR10

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


def test_a_view_of_a_view_is_one_view(digits):
    train = digits[0]
    identity = {c: c for c in range(10)}
    outer = SubtaskDataset(train, np.arange(0, 600, 2), identity)
    assert outer.family == "digits" and outer.classes == train.classes
    inner = SubtaskDataset(outer, np.flatnonzero(np.isin(outer.targets, [3, 5])),
                           Subtask((3, 5), ("3", "5")).label_map)
    assert inner.base is train and inner.family is None and inner.classes == ["3", "5"]
    np.testing.assert_array_equal(train.targets[inner.indices] == 5, inner.targets == 1)
    assert torch.equal(inner[1][0], train[int(inner.indices[1])][0])


@pytest.mark.parametrize("name", ["cifar10-jpeg", "fashion-mnist", "cifar10", "cifar100",
                                  "imagefolder"])
def test_missing_root_raises_data_error(name, tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset(name, "test", root=tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
def test_public_datasets_say_how_to_download(name, tmp_path):
    with pytest.raises(DataError, match="set data.download: true") as err:
        load_dataset(name, "train", root=tmp_path)
    assert "\n" not in str(err.value)


def test_unknown_option_names_the_closest():
    with pytest.raises(ConfigError, match="no option 'scal'. Did you mean 'scale'"):
        DATASETS._entries["mine"] = lambda split, root, download, scale=1: None
        try:
            load_dataset("mine", scal=2)
        finally:
            del DATASETS._entries["mine"]


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


# --- torchvision's CIFAR-10 -------------------------------------------------------------------

def _cifar_batches(root, count=4):
    """A tiny ``cifar-10-batches-py`` folder in torchvision's layout (files named as its lists)."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": [i % 10 for i in range(count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {CIFAR10.meta["key"]: list(CIFAR10_CLASSES)}
    (folder / CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta))
    return folder


def test_cifar10_from_torchvision_batches(tmp_path, monkeypatch):
    folder = _cifar_batches(tmp_path)
    # the fake files cannot carry CIFAR-10's checksums: check that they exist, as torchvision
    # does, and nothing else; nothing is downloaded
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    train = load_dataset("cifar10", "train", root=tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path, download=True)  # present: no fetch
    assert (len(train), len(test)) == (20, 4) and train.image_shape == (3, 32, 32)
    assert train.classes == list(CIFAR10_CLASSES) and train.family == "cifar10"
    raw = torch.from_numpy(pickle.loads((folder / "test_batch").read_bytes())["data"])
    assert torch.equal(test.images.reshape(4, -1), raw)
    np.testing.assert_array_equal(test.targets, [0, 1, 2, 3])
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="damaged; delete it and download again"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataError, match="cannot download Fashion-MNIST") as err:
        load_dataset("fashion-mnist", "test", root=tmp_path, download=True)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="cannot download CIFAR10"):
        load_dataset("cifar10", "test", root=tmp_path, download=True)

