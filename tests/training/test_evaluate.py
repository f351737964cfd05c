import torch
from torch import nn
from torch.utils.data import TensorDataset

from subdistill.training.evaluate import accuracy, confusion_matrix, per_class_accuracy


class Fixed(nn.Module):
    """Predicts the class stored in the first pixel of the image."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 3).float()


def test_confusion_counts_true_rows_and_predicted_columns():
    predicted = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    labels = torch.tensor([0, 1, 1, 2, 2, 0, 1])
    data = TensorDataset(predicted[:, None].float(), labels)
    counts = confusion_matrix(Fixed(), data, batch_size=3)
    assert counts.tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 2]]
    assert accuracy(Fixed(), data, batch_size=2) == 5 / 7
    assert per_class_accuracy(counts) == [0.5, 2 / 3, 1.0]
    assert per_class_accuracy(torch.tensor([[0, 0], [1, 1]])) == [None, 0.5]
