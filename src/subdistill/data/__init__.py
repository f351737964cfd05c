"""Datasets found by name, subtasks and their presets, splits and batch-wise augmentation.

Importing the package registers the built-in datasets (:mod:`.digits`, :mod:`.cifar`,
:mod:`.fashion_mnist`, :mod:`.imagefolder`) and their subtask presets.
"""

from . import cifar, digits, fashion_mnist, imagefolder  # noqa: F401  (register datasets)
from .augment import build_augment, list_augments, register_augment
from .base import ArrayImageDataset, ImageDataset, SubtaskDataset
from .imagefolder import FolderImageDataset
from .registry import data_root, list_datasets, load_dataset, register_dataset
from .splits import SubtaskSplits, make_splits
from .subtask import Subtask, list_presets, register_presets

__all__ = [
    "ArrayImageDataset",
    "FolderImageDataset",
    "ImageDataset",
    "Subtask",
    "SubtaskDataset",
    "SubtaskSplits",
    "build_augment",
    "data_root",
    "list_augments",
    "list_datasets",
    "list_presets",
    "load_dataset",
    "make_splits",
    "register_augment",
    "register_dataset",
    "register_presets",
]
