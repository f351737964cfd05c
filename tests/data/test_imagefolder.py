import io

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import subdistill.data.imagefolder as imagefolder
from subdistill.config import TeacherConfig, load_config
from subdistill.data import Subtask, imagenet_class_names, load_dataset, make_splits
from subdistill.errors import ConfigError, DataError
from subdistill.jobs import load_full_data


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))


def _png_folder(root, classes, sizes=((10, 12), (12, 10))):
    for c, colour in classes.items():
        (root / c).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, colour).save(root / c / f"{i}.png")


@pytest.fixture
def folder(tmp_path):
    colours = {"b_cls": (255, 0, 0), "a_cls": (0, 0, 255)}
    _png_folder(tmp_path / "train", colours)
    _png_folder(tmp_path / "test", colours, sizes=[(9, 9)])
    return tmp_path


def test_imagefolder(folder):
    train = load_dataset("imagefolder", "train", root=folder, resize=8, image_size=6)
    test = load_dataset("imagefolder", "test", root=folder, resize=8, image_size=6)
    assert train.classes == ["a_cls", "b_cls"] and train.family is None
    np.testing.assert_array_equal(train.targets, [0, 0, 1, 1])
    assert len(test) == 2 and test.image_shape == (3, 6, 6)
    image, label = train[2]
    assert image.shape == (3, 6, 6) and label == 1
    mean, std = torch.tensor(train.mean), torch.tensor(train.std)
    torch.testing.assert_close(image[:, 0, 0], (torch.tensor([1.0, 0, 0]) - mean) / std)


def test_resize_defaults_to_eight_sevenths_of_the_image_size(folder):
    assert load_dataset("imagefolder", root=folder).resize == 256
    assert load_dataset("imagefolder", root=folder, image_size=35).resize == 40


def test_options_reach_the_loader_from_yaml(folder, tmp_path):
    config = {"model": {"name": "cifar_resnet"},
              "data": {"dataset": "imagefolder", "root": str(folder),
                       "options": {"image_size": 6, "resize": 8, "mean": [0.5, 0.5, 0.5],
                                   "std": [0.25, 0.25, 0.25], "cache": "memory"}}}
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(config))
    train, test = load_full_data(load_config(path, cls=TeacherConfig).data)
    assert train.image_shape == test.image_shape == (3, 6, 6)
    assert train.mean == (0.5, 0.5, 0.5) and train.cache == "memory"
    torch.testing.assert_close(train[2][0][:, 0, 0], torch.tensor([2.0, -2.0, -2.0]))
    bad = load_config(path, ["data.options.image_sise=6"], cls=TeacherConfig)
    with pytest.raises(ConfigError, match="no option 'image_sise'. Did you mean 'image_size'"):
        load_full_data(bad.data)


@pytest.mark.parametrize("options, message", [
    ({"image_size": 0}, "image_size must be a positive integer"),
    ({"resize": 2.5}, "resize must be a positive integer"),
    ({"mean": [0.5, 0.5]}, "mean must be 3 numbers"),
    ({"std": [0.2, 0.0, 0.2]}, "std must be positive"),
    ({"cache": "ram"}, "unknown value 'ram'.*Use one of none, memory, disk"),
    ({"train_crop": "random"}, "Did you mean 'random-resized'"),
])
def test_bad_options_are_one_line_config_errors(folder, options, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_dataset("imagefolder", root=folder, **options)
    assert "\n" not in str(err.value)


def test_damaged_image_is_a_data_error(folder):
    (folder / "train" / "a_cls" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0.png"):
        load_dataset("imagefolder", root=folder, cache="memory")


@pytest.mark.parametrize("train_crop", ["none", "random-resized"])
def test_disk_cache_decodes_once_per_file_list(folder, tmp_path, monkeypatch, train_crop):
    options = {"resize": 8, "image_size": 6, "train_crop": train_crop}
    plain = load_dataset("imagefolder", root=folder, **options)
    first = load_dataset("imagefolder", root=folder, cache="disk", **options)
    assert len(list((tmp_path / "cache").rglob("*.bin"))) == 1
    torch.manual_seed(0)
    expected = [plain[i][0] for i in range(len(plain))]
    torch.manual_seed(0)
    assert all(torch.equal(first[i][0], e) for i, e in enumerate(expected))

    def no_decoding(self, index):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(imagefolder.FolderImageDataset, "_stored", no_decoding)
    again = load_dataset("imagefolder", root=folder, cache="disk", **options)
    torch.manual_seed(0)
    assert all(torch.equal(again[i][0], e) for i, e in enumerate(expected))
    monkeypatch.undo()
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))
    Image.new("RGB", (10, 12), (0, 255, 0)).save(folder / "train" / "a_cls" / "2.png")
    assert len(load_dataset("imagefolder", root=folder, cache="disk", **options)) == 5
    assert len(list((tmp_path / "cache").rglob("*.bin"))) == 2  # a new file list, a new key


def _striped(path, size=(32, 16)):
    """Red left quarter, blue right quarter, green middle (width x height = size)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 4] = (255, 0, 0)
    pixels[:, size[0] // 4: 3 * size[0] // 4] = (0, 255, 0)
    pixels[:, 3 * size[0] // 4:] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _has_red(image, dataset):
    raw = image * torch.tensor(dataset.std).view(3, 1, 1) + torch.tensor(dataset.mean).view(3, 1, 1)
    return bool(((raw[0] > 0.5) & (raw[1] < 0.5)).any())


def test_training_crops_come_from_the_whole_image(tmp_path):
    for split in ("train", "test"):
        for c in ("x", "y"):
            for i in range(5):
                _striped(tmp_path / split / c / f"{i}.png")
    options = {"image_size": 8, "resize": 8, "train_crop": "random-resized"}
    train = load_dataset("imagefolder", "train", root=tmp_path, **options)
    test = load_dataset("imagefolder", "test", root=tmp_path, **options)
    centre = train.evaluation()
    assert centre.train_crop == "none" and centre.classes == train.classes
    assert not any(_has_red(centre[i][0], centre) for i in range(len(centre)))
    assert not any(_has_red(test[i][0], test) for i in range(len(test)))  # test: centre crops
    torch.manual_seed(0)
    crops = [train[0][0] for _ in range(40)]
    assert all(crop.shape == (3, 8, 8) for crop in crops)
    assert any(_has_red(crop, train) for crop in crops)  # the margins the centre crop drops
    assert train.fingerprint() != centre.fingerprint()
    subtask = Subtask((0, 1), ("x", "y"))
    splits = make_splits(train, test, subtask, rho=0.6, val_fraction=0.4)
    assert splits.train.base is train and splits.val.base is centre
    assert torch.equal(splits.val[0][0], splits.val[0][0])


def test_training_crop_sources_are_bounded(tmp_path):
    _striped(tmp_path / "train" / "x" / "0.png", size=(64, 32))
    _striped(tmp_path / "train" / "y" / "0.png", size=(64, 32))
    train = load_dataset("imagefolder", root=tmp_path, image_size=8, train_crop="random-resized",
                         source_size=20)
    assert train._stored(0).shape == (3, 20, 40)


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[207] == "golden retriever"


def test_imagefolder_names_imagenet_folders(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    for i in range(1000):
        folder = tmp_path / "val" / f"n{i:08d}"
        folder.mkdir(parents=True)
        (folder / "x.png").write_bytes(buffer.getvalue())
    ds = load_dataset("imagefolder", "test", root=tmp_path)
    assert ds.family == "imagenet" and len(ds) == 1000
    assert ds.classes == imagenet_class_names()
    retriever = Subtask.resolve("retriever", ds.classes, ds.family)
    assert retriever.names == ("flat-coated retriever", "curly-coated retriever",
                               "golden retriever", "Labrador retriever",
                               "Chesapeake Bay retriever")
    assert Subtask.resolve(["golden retriever", "tench"], ds.classes).classes == (0, 207)
