"""CIFAR-10 and CIFAR-100: class names, normalisation, subtask presets and their loaders
(the offline CIFAR-10 JPEG zips, torchvision's pickled batches)."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, first_line
from .base import ArrayImageDataset, Stats
from .registry import DOWNLOAD_HINT, first_existing, register_dataset
from .subtask import class_indices, register_presets
from .zip_images import cached_images

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN: Stats = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Stats = (0.2470, 0.2435, 0.2616)

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


CIFAR100_MEAN: Stats = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Stats = (0.2673, 0.2564, 0.2762)

register_presets("cifar10", {
    "vehicles": class_indices(CIFAR10_CLASSES, ("airplane", "automobile", "ship", "truck")),
    "pets": class_indices(CIFAR10_CLASSES, ("cat", "dog")),
    "animals": class_indices(CIFAR10_CLASSES, ("bird", "cat", "deer", "dog", "frog", "horse")),
})
register_presets("cifar100", {name: class_indices(CIFAR100_CLASSES, fine)
                              for name, fine in CIFAR100_SUPERCLASSES.items()})


@register_dataset("cifar10-jpeg")
def _cifar10_jpeg(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """CIFAR-10 from ``<root>/cifar10-jpeg/{train,test}.zip`` (or ``<root>/{split}.zip``), with
    the layout ``<split>/<class>/<NNNN>.jpg``. Decoded images are cached in :func:`cache_dir`."""
    path = first_existing(
        [root / "cifar10-jpeg" / f"{split}.zip", root / f"{split}.zip"],
        f"CIFAR-10 JPEG {split} zip",
        "Point root at the folder holding cifar10-jpeg/, or use dataset 'cifar10' (torchvision's "
        "CIFAR-10, fetched with data.download: true).",
    )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path} is not a readable zip file ({err}); re-fetch it.") from None
    with archive:
        members = _cifar10_members(archive, path)
        labels = np.array([label for label, _ in members], dtype=np.int64)
        images = cached_images(archive, path, [name for _, name in members],
                               f"cifar10-jpeg/{split}")
    return ArrayImageDataset(images, labels, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD,
                             family="cifar10")


def _cifar10_members(archive: zipfile.ZipFile, path: Path) -> list[tuple[int, str]]:
    """(label, member name) of every image, by class in CIFAR-10 order, then by name."""
    members = []
    for name in archive.namelist():
        if name.endswith("/"):
            continue
        parts = name.split("/")
        if len(parts) < 2 or parts[-2] not in CIFAR10_CLASSES:
            raise DataError(
                f"{path} has member {name!r} outside the layout <split>/<class>/<file>.jpg "
                f"with a CIFAR-10 class; is it a CIFAR-10 JPEG zip?"
            )
        members.append((CIFAR10_CLASSES.index(parts[-2]), name))
    if not members:
        raise DataError(f"{path} contains no images.")
    return sorted(members)



def _torchvision_cifar(dataset_class: type, split: str, root: Path, download: bool,
                       classes: Sequence[str], mean: Stats, std: Stats,
                       family: str) -> ArrayImageDataset:
    folder = root / getattr(dataset_class, "base_folder", "")
    try:
        dataset = dataset_class(root, train=split == "train", download=download)
    except RuntimeError:
        how = ("it is damaged; delete it and download again" if folder.exists() else
               f"point data.root at the folder holding it, or {DOWNLOAD_HINT}")
        raise DataError(f"{dataset_class.__name__} not found in {folder}: {how}.") from None
    except OSError as err:  # no network, a full disk, ...
        raise DataError(f"cannot download {dataset_class.__name__} into {root} "
                        f"({first_line(err)}).") from None
    images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))
    return ArrayImageDataset(images, dataset.targets, classes, mean, std, family=family)


@register_dataset("cifar10")
def _cifar10(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """torchvision's CIFAR-10 (``<root>/cifar-10-batches-py``, fetched there with
    ``download=True``)."""
    from torchvision.datasets import CIFAR10

    return _torchvision_cifar(CIFAR10, split, root, download, CIFAR10_CLASSES,
                              CIFAR10_MEAN, CIFAR10_STD, "cifar10")


@register_dataset("cifar100")
def _cifar100(split: str, root: Path, download: bool) -> ArrayImageDataset:
    """torchvision's CIFAR-100 with fine labels (``<root>/cifar-100-python``, fetched there
    with ``download=True``)."""
    from torchvision.datasets import CIFAR100

    return _torchvision_cifar(CIFAR100, split, root, download, CIFAR100_CLASSES,
                              CIFAR100_MEAN, CIFAR100_STD, "cifar100")
