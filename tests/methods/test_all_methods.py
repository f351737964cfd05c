"""Every registered method runs end to end through the trainer on a small setting."""

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill.methods import list_methods
from subdistill.training import distill


def _data(n, seed):
    prototypes = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return TensorDataset(prototypes[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=generator), y)


@pytest.mark.parametrize("method", list_methods())
def test_method_trains_the_student_only(method):
    torch.manual_seed(0)
    teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_state = {k: v.clone() for k, v in student.state_dict().items()}
    result = distill(teacher, student, _data(32, 0), _data(12, 1), method=method,
                     pairs={"stage1": "stage1", "stage2": "stage2"}, epochs=2, batch_size=8,
                     progress=False)
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.history[-1].items()
               if k.startswith("loss"))
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    assert any(not torch.equal(v, student_state[k]) for k, v in student.state_dict().items())
    assert set(result.student.state_dict()) == set(student_state)
