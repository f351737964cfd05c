"""Subtasks (a few classes of a larger classification problem) and their presets.

A subtask keeps its original class indices sorted ascending; labels are remapped to
0..|S|-1 in that order. Presets are named subtasks of a dataset family, registered next to the
dataset's loader (``register_presets("cifar10", {"vehicles": (0, 1, 8, 9), ...})``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

from ..errors import SubtaskError, closest
from ..registry import Registry

PRESETS: Registry[dict[str, tuple[int, ...]]] = Registry(
    "preset family", SubtaskError,
    "Otherwise give the subtask as a list of class indices or class names.")


def register_presets(family: str, presets: Mapping[str, Sequence[int]]) -> None:
    """Register the preset subtasks of a dataset ``family``: name -> original class indices."""
    PRESETS.register(family, {name: tuple(sorted(int(c) for c in classes))
                              for name, classes in presets.items()})


def class_indices(class_names: Sequence[str], members: Sequence[str]) -> tuple[int, ...]:
    """The sorted indices of the classes called ``members``."""
    return tuple(sorted(class_names.index(m) for m in members))


def list_presets(family: str | None = None) -> dict[str, list[str]]:
    """Preset subtask names per dataset family (only ``family`` when given)."""
    if family is None:
        return {fam: sorted(presets) for fam, presets in PRESETS.items()}
    return {family: sorted(family_presets(family))}


def family_presets(family: str | None) -> dict[str, tuple[int, ...]]:
    """The presets of dataset ``family`` (name -> class indices)."""
    return PRESETS.get(str(family))


@dataclass(frozen=True)
class Subtask:
    """A set of at least two original class indices (kept sorted ascending) and their names."""

    classes: tuple[int, ...]
    names: tuple[str, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        classes = tuple(int(c) for c in self.classes)
        names = tuple(str(n) for n in self.names)
        if len(classes) < 2:
            raise SubtaskError(
                f"subtask {self.name!r} has {len(classes)} class(es); give at least 2 classes."
            )
        if len(names) != len(classes):
            raise SubtaskError(
                f"subtask {self.name!r} has {len(classes)} classes but {len(names)} names; "
                "give one name per class."
            )
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise SubtaskError(
                f"subtask {self.name!r} lists classes {duplicates} more than once; "
                "list each class once."
            )
        negative = [c for c in classes if c < 0]
        if negative:
            raise SubtaskError(
                f"subtask {self.name!r} has negative class indices {negative}; "
                "class indices start at 0."
            )
        order = sorted(range(len(classes)), key=classes.__getitem__)
        object.__setattr__(self, "classes", tuple(classes[i] for i in order))
        object.__setattr__(self, "names", tuple(names[i] for i in order))

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def label_map(self) -> dict[int, int]:
        """Original class index -> subtask label 0..|S|-1 (ascending original order)."""
        return {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def resolve(
        cls,
        spec: str | Sequence[int | str] | Mapping[str, Any] | Subtask,
        class_names: Sequence[str] | None = None,
        family: str | None = None,
    ) -> Subtask:
        """Build a subtask of a dataset with ``class_names`` from ``spec``.

        ``spec`` is a preset name of the dataset ``family`` (see :func:`list_presets`), a list of
        class indices and/or class names (names match case-insensitively), a string of them
        separated by commas (e.g. ``"3,5"`` or ``"cat,dog"``), a named one
        (``{name: wildlife, classes: [2, 4, 6, 7]}``: its name labels tables, plots and
        folders), or a Subtask. Without
        ``class_names`` (a dataset that has none) the classes are given by index and named
        ``"3"``, ``"5"``, ...
        """
        if isinstance(spec, Subtask):
            classes, name = spec.classes, spec.name
        elif isinstance(spec, Mapping):
            named = _named(spec)
            return replace(cls.resolve(named["classes"], class_names, family), name=named["name"])
        elif isinstance(spec, str) and "," not in spec:
            presets = family_presets(family)
            if spec not in presets:
                raise SubtaskError(
                    f"unknown {family} subtask preset {spec!r}.{closest(spec, presets)} "
                    f"Presets: {', '.join(sorted(presets))}."
                )
            classes, name = presets[spec], spec
        else:
            items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
            classes, name = tuple(_class_index(item, class_names) for item in items), "custom"
        if class_names is None:
            return cls(classes, tuple(str(c) for c in classes), name=name)
        _check_range(classes, class_names)
        return cls(classes, tuple(class_names[c] for c in classes), name=name)


def _named(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A named subtask spec ``{name: ..., classes: [...]}``, its keys and name checked."""
    if set(spec) != {"name", "classes"}:
        raise SubtaskError(f"a named subtask has the keys name and classes (e.g. {{name: "
                           f"wildlife, classes: [2, 4, 6, 7]}}), got {sorted(spec)}")
    if not isinstance(spec["name"], str) or not spec["name"].strip():
        raise SubtaskError(f"a named subtask's name must be a non-empty text, got {spec['name']!r}")
    if isinstance(spec["classes"], Mapping):
        raise SubtaskError("a named subtask's classes are a list of class indices or names")
    return spec


def _class_index(item: int | str, class_names: Sequence[str] | None) -> int:
    """The class index an item of a subtask spec denotes (an index or a class name)."""
    if isinstance(item, Integral) and not isinstance(item, bool):
        return int(item)
    if isinstance(item, str) and item.isdigit():
        return int(item)
    if not isinstance(item, str):
        raise SubtaskError(
            f"subtask item {item!r} is neither a class index nor a class name."
        )
    if class_names is None:
        raise SubtaskError(f"subtask item {item!r} is a class name, but the dataset has no "
                           "class names; give class indices.")
    matches = [i for i, n in enumerate(class_names) if n.lower() == item.lower()]
    if not matches:
        raise SubtaskError(f"unknown class name {item!r}.{closest(item, class_names)}")
    if len(matches) > 1:
        raise SubtaskError(
            f"class name {item!r} is ambiguous (indices {matches}); give the class index instead."
        )
    return matches[0]


def _check_range(classes: Sequence[int], class_names: Sequence[str]) -> None:
    bad = [c for c in classes if not 0 <= c < len(class_names)]
    if bad:
        raise SubtaskError(
            f"class indices {bad} are out of range; this dataset has {len(class_names)} classes, "
            f"valid indices are 0..{len(class_names) - 1}."
        )
