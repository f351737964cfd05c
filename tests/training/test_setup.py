import torch
from test_trainer import _data
from torch import nn
from torch.utils.data import TensorDataset

from subdistill.training import distill
from subdistill.training.setup import init_from_data


class _Recording(nn.Module):
    """A model whose data-dependent initialisation records the images it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4, 3))
        self.seen: list[int] = []

    def init_from_data(self, images: torch.Tensor) -> None:
        self.seen.append(images.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_init_from_data_draws_its_images_across_a_class_sorted_dataset(monkeypatch):
    monkeypatch.setattr("subdistill.training.setup.INIT_IMAGES", 30)
    x = torch.arange(90, dtype=torch.float32)[:, None, None, None].expand(90, 3, 4, 4)
    data = TensorDataset(x, torch.arange(90) // 30)  # three classes, stored one after another
    seen = {}

    class Hooked(nn.Module):
        def init_from_data(self, images: torch.Tensor) -> None:
            seen["images"] = images[:, 0, 0, 0].long()

    assert init_from_data(nn.Sequential(Hooked()), data, torch.device("cpu"), seed=0) == 30
    first = seen["images"]
    assert len(set(first.tolist())) == 30 and len(set((first // 30).tolist())) == 3
    init_from_data(nn.Sequential(Hooked()), data, torch.device("cpu"), seed=0)
    assert torch.equal(seen["images"], first)  # the same draw in every process
    assert init_from_data(nn.Linear(2, 2), data, torch.device("cpu"), seed=0) == 0


def test_a_fresh_run_initialises_from_data_and_a_resumed_one_does_not(tmp_path):
    student = _Recording()
    distill(None, student, _data(), _data(24, 1), method="student-only", epochs=1,
            batch_size=8, progress=False, run_dir=tmp_path)
    assert student.seen == [48]
    resumed = _Recording()
    distill(None, resumed, _data(), _data(24, 1), method="student-only", epochs=2,
            batch_size=8, progress=False, run_dir=tmp_path, resume=True)
    assert resumed.seen == []
