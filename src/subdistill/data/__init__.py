"""Datasets found by name, subtasks and their presets, splits and batch-wise augmentation.

Importing the package registers the built-in datasets (:mod:`.digits`, :mod:`.cifar`,
:mod:`.fashion_mnist`, :mod:`.imagefolder`) and their subtask presets.
"""

from . import cifar, digits, fashion_mnist, imagefolder  # noqa: F401  (register datasets)
from .augment import build_augment, list_augments, register_augment
from .base import ArrayImageDataset, ImageDataset, SubtaskDataset
from .imagefolder import FolderImageDataset, imagenet_class_names
from .labels import dataset_classes, dataset_targets
from .registry import data_root, list_datasets, load_dataset, register_dataset
from .splits import SubtaskSplits, holdout_split, make_splits, split_dataset
from .subtask import Subtask, list_presets, register_presets
from .tensors import TensorImageDataset

__all__ = [
    "ArrayImageDataset",
    "FolderImageDataset",
    "ImageDataset",
    "Subtask",
    "SubtaskDataset",
    "SubtaskSplits",
    "TensorImageDataset",
    "build_augment",
    "data_root",
    "dataset_classes",
    "dataset_targets",
    "holdout_split",
    "imagenet_class_names",
    "list_augments",
    "list_datasets",
    "list_presets",
    "load_dataset",
    "make_splits",
    "register_augment",
    "register_dataset",
    "register_presets",
    "split_dataset",
]
