"""A teacher restricted to a subtask: it outputs only the subtask's logits, in label order."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.subtask import Subtask
from ..errors import SubtaskError


class RestrictedTeacher(nn.Module):
    """A classifier whose output is restricted to the logits of the given classes.

    The wrapped model is ``self.module`` (as in DDP), so its layers are ``module.<path>``.
    """

    indices: Tensor

    def __init__(self, module: nn.Module, classes: Sequence[int]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer(
            "indices", torch.tensor(list(classes), dtype=torch.long), persistent=False
        )
        self._needed = max(classes) + 1

    def forward(self, x: Tensor) -> Tensor:
        logits = self.module(x)
        if logits.shape[-1] < self._needed:
            raise SubtaskError(
                f"the teacher outputs {logits.shape[-1]} logits but the subtask needs class "
                f"index {self._needed - 1}; use a teacher trained on the subtask's dataset."
            )
        return logits[:, self.indices]


def restrict_teacher(teacher: nn.Module, subtask: Subtask) -> RestrictedTeacher:
    """Wrap ``teacher`` so that it outputs only the subtask's logits, in subtask label order."""
    return RestrictedTeacher(teacher, subtask.classes)
