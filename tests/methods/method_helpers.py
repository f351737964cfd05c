"""Helpers shared by the method tests (imported as `from method_helpers import ...`)."""

import torch

from subdistill.methods import StepOutputs


def layer_step(teacher_map, student_map, classes=5, seed=0):
    """StepOutputs for one pair ``t`` -> ``s`` with random (seeded) subtask logits."""
    generator = torch.Generator().manual_seed(seed)
    batch = teacher_map.shape[0]
    return StepOutputs(student_logits=torch.randn(batch, classes, generator=generator),
                       labels=torch.zeros(batch, dtype=torch.long),
                       teacher_logits=torch.randn(batch, classes, generator=generator),
                       student_features={"s": student_map}, teacher_features={"t": teacher_map})
