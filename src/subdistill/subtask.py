"""Subtasks (a few classes of a larger classification problem) and teachers restricted to them.

A subtask keeps its original class indices sorted ascending; labels are remapped to
0..|S|-1 in that order, and the restricted teacher selects the same logit columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from .errors import SubtaskError, closest

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

# The standard CIFAR-100 fine label names, in label order (alphabetical).
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# The 20 CIFAR-100 superclasses (coarse labels, in label order) and their fine classes.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def _indices(class_names: Sequence[str], members: Sequence[str]) -> tuple[int, ...]:
    return tuple(sorted(class_names.index(m) for m in members))


# Preset subtasks per dataset family: {family: {preset name: original class indices}}.
PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "cifar100": {
        name: _indices(CIFAR100_CLASSES, fine) for name, fine in CIFAR100_SUPERCLASSES.items()
    },
    # The paper's 8 ImageNet groups of 5 sibling classes.
    "imagenet": {
        "wading-bird": (129, 130, 134, 135, 138),
        "retriever": (205, 206, 207, 208, 209),
        "working-dog": (242, 243, 246, 247, 248),
        "domestic-cat": (281, 282, 283, 284, 285),
        "bag": (414, 636, 728, 748, 797),
        "bottle": (440, 720, 737, 898, 907),
        "box": (478, 492, 519, 637, 709),
        "truck": (555, 569, 717, 864, 867),
    },
    "cifar10": {
        "vehicles": _indices(CIFAR10_CLASSES, ("airplane", "automobile", "ship", "truck")),
        "pets": _indices(CIFAR10_CLASSES, ("cat", "dog")),
        "animals": _indices(CIFAR10_CLASSES, ("bird", "cat", "deer", "dog", "frog", "horse")),
    },
    "fashion-mnist": {
        "tops": _indices(FASHION_MNIST_CLASSES, ("T-shirt/top", "Pullover", "Coat", "Shirt")),
        "footwear": _indices(FASHION_MNIST_CLASSES, ("Sandal", "Sneaker", "Ankle boot")),
    },
    "digits": {
        "confusable": (3, 5, 8, 9),
        "low": (0, 1, 2, 3, 4),
    },
}


def list_presets(family: str | None = None) -> dict[str, list[str]]:
    """Preset subtask names per dataset family (only ``family`` when given)."""
    if family is None:
        return {fam: sorted(presets) for fam, presets in PRESETS.items()}
    return {family: sorted(_family_presets(family))}


def _family_presets(family: str | None) -> dict[str, tuple[int, ...]]:
    if family not in PRESETS:
        raise SubtaskError(
            f"there are no preset subtasks for dataset family {family!r}"
            f"{closest(str(family), PRESETS)} Families with presets: {', '.join(PRESETS)}; "
            "otherwise give the subtask as a list of class indices or class names."
        )
    return PRESETS[family]


LabelsT = TypeVar("LabelsT", np.ndarray, Tensor)


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

    def remap(self, labels: LabelsT) -> LabelsT:
        """Map original labels to subtask labels; same type (and device) as ``labels``.

        Raises SubtaskError if a label is not one of the subtask's classes.
        """
        original = torch.as_tensor(labels).long()
        table = torch.full((self.classes[-1] + 1,), -1, dtype=torch.long, device=original.device)
        table[list(self.classes)] = torch.arange(len(self), device=original.device)
        inside = (original >= 0) & (original < table.numel())
        remapped = torch.where(inside, table[original.clamp(0, table.numel() - 1)], -1)
        if bool((remapped < 0).any()):
            foreign = sorted(set(original[remapped < 0].tolist()))
            raise SubtaskError(
                f"labels {foreign[:10]} are not classes of subtask {self.name!r} "
                f"{list(self.classes)}; filter the data to the subtask before remapping."
            )
        return remapped if isinstance(labels, Tensor) else remapped.numpy()

    @classmethod
    def resolve(
        cls,
        spec: str | Sequence[int | str] | Subtask,
        class_names: Sequence[str],
        family: str | None = None,
    ) -> Subtask:
        """Build a subtask of a dataset with ``class_names`` from ``spec``.

        ``spec`` is a preset name of the dataset ``family`` (see :func:`list_presets`), a list of
        class indices and/or class names (names match case-insensitively), a string of them
        separated by commas (e.g. ``"3,5"`` or ``"cat,dog"``), or a Subtask.
        """
        if isinstance(spec, Subtask):
            classes, name = spec.classes, spec.name
        elif isinstance(spec, str) and "," not in spec:
            presets = _family_presets(family)
            if spec not in presets:
                raise SubtaskError(
                    f"unknown {family} subtask preset {spec!r}.{closest(spec, presets)} "
                    f"Presets: {', '.join(sorted(presets))}."
                )
            classes, name = presets[spec], spec
        else:
            items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
            classes, name = tuple(_class_index(item, class_names) for item in items), "custom"
        _check_range(classes, class_names)
        return cls(classes, tuple(class_names[c] for c in classes), name=name)


def _class_index(item: int | str, class_names: Sequence[str]) -> int:
    """The class index an item of a subtask spec denotes (an index or a class name)."""
    if isinstance(item, Integral) and not isinstance(item, bool):
        return int(item)
    if isinstance(item, str) and item.isdigit():
        return int(item)
    if not isinstance(item, str):
        raise SubtaskError(
            f"subtask item {item!r} is neither a class index nor a class name."
        )
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


class RestrictedTeacher(nn.Module):
    """A classifier whose output is restricted to the logits of the given classes.

    The wrapped model is ``self.module`` (as in DDP), so its layers are ``module.<path>``.
    """

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
