import pytest
import torch
from torch import nn

from subdistill.data.subtask import Subtask
from subdistill.errors import SubtaskError
from subdistill.models.restricted import RestrictedTeacher, restrict_teacher


def test_restricted_teacher_selects_subtask_logits():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))
    s = Subtask((7, 2, 4), ("a", "b", "c"))
    restricted = restrict_teacher(teacher, s)
    assert isinstance(restricted, RestrictedTeacher)
    assert restricted.module is teacher
    x = torch.randn(5, 4)
    torch.testing.assert_close(restricted(x), teacher(x)[:, [2, 4, 7]])
    assert dict(restricted.named_modules())["module.2"] is teacher[2]
    assert all(k.startswith("module.") for k in restricted.state_dict())
    assert restricted.double().indices.dtype == torch.long


def test_restricted_teacher_with_too_few_logits():
    restricted = restrict_teacher(nn.Linear(4, 5), Subtask((2, 7), ("a", "b")))
    with pytest.raises(SubtaskError, match="outputs 5 logits"):
        restricted(torch.randn(2, 4))
