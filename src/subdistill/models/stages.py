"""Finding a model's stage outputs and pairing a teacher's stages with a student's
(``pairs: auto``).

Stage outputs of a CNN: among the root's children (a child container whose children work at
several resolutions is opened, e.g. a MobileNet's ``stages``), the last *container* module at
each spatial resolution above 1 × 1 (``layer1`` ... ``layer4`` of a ResNet; stems and single
layers are not stages). Stage outputs of a transformer: the blocks, the longest run of sibling
modules with the same token output, without the last (its patch tokens do not reach the head).
Pairs: the student's last ``min(3, stages)`` stages, each with the teacher stage at the same
relative depth.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..errors import ModelError
from .inspect import layer_shapes
from .restricted import RestrictedTeacher


def _candidates(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], prefix: str = "") -> list[str]:
    """The root's children, with a child opened when its children work at several sizes."""
    found = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        inner = [f"{path}.{n}" for n, _ in child.named_children() if f"{path}.{n}" in shapes]
        sizes = {shapes[p][2:] for p in inner if len(shapes[p]) == 4}
        found += _candidates(child, shapes, f"{path}.") if len(sizes) > 1 else [path]
    return [p for p in found if p in shapes]


def _token_blocks(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The longest list of sibling modules with the same 3-D (token) output, in order."""
    best: list[str] = []
    for path, module in model.named_modules():
        children = [f"{path}.{n}" if path else n for n, _ in module.named_children()]
        tokens = [c for c in children if len(shapes.get(c, ())) == 3]
        if len(tokens) > len(best) and len({shapes[c] for c in tokens}) == 1:
            best = tokens
    return best


def stage_outputs(model: nn.Module, example: Tensor) -> list[str]:
    """The module paths of ``model``'s stage outputs (see the module docstring); for a
    teacher restricted to a subtask, the paths in the model it wraps."""
    if isinstance(model, RestrictedTeacher):
        model = model.module
    infos = layer_shapes(model, example[:1])
    shapes = {info.path: info.shape for info in infos}
    modules = dict(model.named_modules())
    stages: dict[tuple[int, ...], str] = {}
    for path in _candidates(model, shapes):
        shape = shapes[path]
        if len(shape) == 4 and shape[2] * shape[3] > 1 and any(modules[path].children()):
            stages[shape[2:]] = path  # the last container at this resolution
    if stages:
        return list(stages.values())
    blocks = _token_blocks(model, shapes)
    if len(blocks) > 1:
        return blocks[:-1]
    raise ModelError(f"cannot find the stages of a {type(model).__name__}: give `pairs` by hand "
                     "(`subdistill layers` lists its layers)")


def auto_pairs(teacher: nn.Module, student: nn.Module, example: Tensor) -> dict[str, str]:
    """Teacher stage -> student stage for the student's last ``min(3, n)`` stages, each with the
    teacher stage at the same relative depth."""
    t_stages, s_stages = stage_outputs(teacher, example), stage_outputs(student, example)
    m, n = len(t_stages), len(s_stages)
    pairs = {}
    for j in range(max(0, n - 3), n):
        t = max(0, min(m - 1, round((j + 1) * m / n) - 1))
        pairs[t_stages[t]] = s_stages[j]
    return pairs
