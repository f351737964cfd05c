import torch
from test_trainer import _data
from torch import nn

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


def test_init_from_data_gives_the_hook_the_first_training_images():
    model, data = _Recording(), _data(20)
    assert init_from_data(model, data, torch.device("cpu"))
    assert model.seen == [20]
    assert not init_from_data(nn.Linear(2, 2), data, torch.device("cpu"))


def test_a_fresh_run_initialises_from_data_and_a_resumed_one_does_not(tmp_path):
    student = _Recording()
    distill(None, student, _data(), _data(24, 1), method="student-only", epochs=1,
            batch_size=8, progress=False, run_dir=tmp_path)
    assert student.seen == [48]
    resumed = _Recording()
    distill(None, resumed, _data(), _data(24, 1), method="student-only", epochs=2,
            batch_size=8, progress=False, run_dir=tmp_path, resume=True)
    assert resumed.seen == []
