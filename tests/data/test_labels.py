import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from subdistill.data import dataset_classes, dataset_targets
from subdistill.training.setup import num_classes


class Unreadable(Dataset):
    """Labels in ``targets``; reading an item fails (a test that the images are not read)."""

    def __init__(self, targets, classes=None):
        self.targets = targets
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        raise AssertionError("an item was read")


class Plain(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return torch.zeros(1), [2, 0, 5][index]


def test_labels_come_from_targets_also_through_subsets():
    base = Unreadable(torch.tensor([4, 0, 2, 7, 1]))
    np.testing.assert_array_equal(dataset_targets(base), [4, 0, 2, 7, 1])
    nested = Subset(Subset(base, [4, 3, 1]), [1, 2])
    np.testing.assert_array_equal(dataset_targets(nested), [7, 0])
    assert num_classes(base) == 8 and num_classes(nested) == 8


def test_classes_come_through_subsets_without_reading():
    base = Unreadable([0, 1], classes=["a", "b", "c"])
    assert dataset_classes(Subset(base, range(1))) == ["a", "b", "c"]
    assert num_classes(Subset(base, range(1))) == 3
    assert dataset_classes(Plain()) is None


def test_tensor_datasets_and_plain_datasets():
    tensors = TensorDataset(torch.zeros(3, 1), torch.tensor([1, 3, 0]))
    np.testing.assert_array_equal(dataset_targets(Subset(tensors, [1, 2])), [3, 0])
    np.testing.assert_array_equal(dataset_targets(Plain()), [2, 0, 5])  # read item by item
    assert num_classes(Plain()) == 6
