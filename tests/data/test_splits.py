import numpy as np
import pytest
import torch

from conftest import TinyCNN
from subdistill import distill
from subdistill.data import (
    ArrayImageDataset,
    Subtask,
    TensorImageDataset,
    holdout_split,
    load_dataset,
    make_splits,
    split_dataset,
)
from subdistill.errors import ConfigError, DataError, SubtaskError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def subtask():
    return Subtask((3, 5, 8, 9), ("3", "5", "8", "9"), name="confusable")


def _original(view):
    """Indices of the view's items in its base dataset."""
    return set(view.indices.tolist())


def test_split_sizes_and_disjointness(digits, subtask):
    train_full, test_full = digits
    splits = make_splits(train_full, test_full, subtask)
    assert splits.subtask is subtask
    for c in subtask.classes:
        n = int((train_full.targets == c).sum())
        label = subtask.label_map[c]
        assert (splits.val.targets == label).sum() == int(0.2 * n + 0.5)
        assert (splits.train.targets == label).sum() == n - int(0.2 * n + 0.5)
    assert not _original(splits.train) & _original(splits.val)
    in_subtask = set(np.flatnonzero(np.isin(train_full.targets, subtask.classes)).tolist())
    assert _original(splits.train) | _original(splits.val) == in_subtask
    assert _original(splits.test) == set(
        np.flatnonzero(np.isin(test_full.targets, subtask.classes)).tolist())
    assert splits.test.base is test_full and splits.val.base is train_full
    for view in (splits.train, splits.val, splits.test):
        assert set(view.targets.tolist()) == {0, 1, 2, 3}
        assert view.classes == ["3", "5", "8", "9"]
        np.testing.assert_array_equal(
            view.targets, [subtask.label_map[t] for t in view.base.targets[view.indices]])


def test_small_rho_is_stratified_and_nested(digits, subtask):
    full = make_splits(*digits, subtask, rho=0.8)
    small = make_splits(*digits, subtask, rho=0.4)
    np.testing.assert_array_equal(small.val.indices, full.val.indices)
    assert _original(small.train) < _original(full.train)
    counts = np.bincount(small.train.targets)
    val_counts = np.bincount(small.val.targets)
    np.testing.assert_allclose(counts / (val_counts / 0.2), 0.4, atol=0.02)


def test_splits_are_seeded(digits, subtask):
    a = make_splits(*digits, subtask, seed=1)
    b = make_splits(*digits, subtask, seed=1)
    c = make_splits(*digits, subtask, seed=2)
    np.testing.assert_array_equal(a.train.indices, b.train.indices)
    np.testing.assert_array_equal(a.val.indices, b.val.indices)
    assert not np.array_equal(a.val.indices, c.val.indices)


def test_class_split_does_not_depend_on_other_classes(digits):
    a = make_splits(*digits, Subtask((3, 5), ("3", "5")))
    b = make_splits(*digits, Subtask((3, 8), ("3", "8")))
    threes = set(np.flatnonzero(digits[0].targets == 3).tolist())
    assert _original(a.val) & threes == _original(b.val) & threes


@pytest.mark.parametrize("rho, val_fraction", [(0.9, 0.2), (0.0, 0.2), (0.5, 0.0), (0.5, 1.0)])
def test_invalid_fractions(digits, subtask, rho, val_fraction):
    with pytest.raises(ConfigError):
        make_splits(*digits, subtask, rho=rho, val_fraction=val_fraction)


def test_subtask_class_missing_from_data(digits):
    train_full, test_full = digits
    keep = np.flatnonzero(train_full.targets != 7)
    no_sevens = ArrayImageDataset(train_full.images[keep], train_full.targets[keep],
                                  train_full.classes, train_full.mean, train_full.std)
    with pytest.raises(SubtaskError, match=r"7 \('7'\).*training"):
        make_splits(no_sevens, test_full, Subtask((2, 7), ("2", "7")))
    with pytest.raises(SubtaskError, match="test"):
        make_splits(train_full, no_sevens, Subtask((2, 7), ("2", "7")))
    with pytest.raises(SubtaskError, match="12"):
        make_splits(train_full, test_full, Subtask((2, 12), ("2", "12")))


def test_train_and_test_must_share_classes(digits, subtask):
    train_full, test_full = digits
    other = ArrayImageDataset(test_full.images, test_full.targets, list("abcdefghij"),
                              test_full.mean, test_full.std)
    with pytest.raises(DataError, match="different classes"):
        make_splits(train_full, other, subtask)


def test_split_items_are_the_base_items(digits, subtask):
    splits = make_splits(*digits, subtask)
    image, label = splits.val[0]
    base_image, base_label = digits[0][int(splits.val.indices[0])]
    assert torch.equal(image, base_image) and label == subtask.label_map[base_label]


def test_fractions_that_leave_a_class_empty_are_refused():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    subtask = Subtask.resolve("confusable", train.classes, "digits")
    with pytest.raises(ConfigError, match="no training image"):
        make_splits(train, test, subtask, rho=0.002)
    with pytest.raises(ConfigError, match="no validation image"):
        make_splits(train, test, subtask, val_fraction=0.001)


# --- one dataset: holdout_split, split_dataset ------------------------------------------------

@pytest.fixture(scope="module")
def one_dataset():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(120, 1, 4, 4, generator=generator)  # already normalised floats
    return TensorImageDataset(images, np.arange(120) % 4, ["a", "b", "c", "d"])


def test_holdout_split_is_stratified_seeded_and_disjoint(one_dataset):
    train_full, test_full = holdout_split(one_dataset, test_fraction=0.25, seed=3)
    assert not _original(train_full) & _original(test_full)
    assert _original(train_full) | _original(test_full) == set(range(120))
    np.testing.assert_array_equal(np.bincount(test_full.targets), [8] * 4)
    assert train_full.classes == test_full.classes == one_dataset.classes
    np.testing.assert_array_equal(train_full.targets, one_dataset.targets[train_full.indices])
    again, _ = holdout_split(one_dataset, test_fraction=0.25, seed=3)
    other, _ = holdout_split(one_dataset, test_fraction=0.25, seed=4)
    np.testing.assert_array_equal(again.indices, train_full.indices)
    assert not np.array_equal(other.indices, train_full.indices)
    digits = load_dataset("digits", "train")
    assert holdout_split(digits)[0].family == "digits"  # labels unchanged: presets still apply


def test_split_dataset_feeds_distill(one_dataset):
    subtask = Subtask.resolve([0, 2, 3], one_dataset.classes)
    splits = split_dataset(one_dataset, subtask, rho=0.5, val_fraction=0.25, seed=1)
    same_test = split_dataset(one_dataset, subtask, rho=0.5, val_fraction=0.25, seed=2)
    np.testing.assert_array_equal(splits.test.indices, same_test.test.indices)  # test_seed fixed
    assert not np.array_equal(splits.val.indices, same_test.val.indices)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 18, 18)
    views = (splits.train, splits.val, splits.test)
    assert not set.intersection(*(_original(v) for v in views))
    assert all(v.base is one_dataset for v in views)  # views of the dataset itself, one level
    assert splits.train.classes == ["a", "c", "d"]
    image, label = splits.train[0]
    assert torch.equal(image, one_dataset[int(splits.train.indices[0])][0])
    torch.manual_seed(0)
    result = distill(None, TinyCNN(num_classes=3, in_channels=1), splits.train, splits.val,
                     test=splits.test, method="student-only", epochs=1, batch_size=16,
                     progress=False)
    assert result.test_accuracy is not None


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1])
def test_holdout_fraction_is_validated(one_dataset, test_fraction):
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        holdout_split(one_dataset, test_fraction)


def test_holdout_refuses_a_class_left_without_images():
    ds = TensorImageDataset(torch.zeros(5, 1, 2, 2), [0, 0, 0, 0, 1], ["many", "one"])
    with pytest.raises(ConfigError, match="class 'one' has 1 images.*no test image"):
        holdout_split(ds, 0.2)
