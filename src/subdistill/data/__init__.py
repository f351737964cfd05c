"""Datasets, subtask splits and batch-wise augmentation."""

from .augment import AUGMENTS, build_augment
from .datasets import (
    DATASETS,
    ArrayImageDataset,
    FolderImageDataset,
    ImageDataset,
    SubtaskDataset,
    cache_dir,
    data_root,
    list_datasets,
    load_dataset,
    read_idx,
    register_dataset,
)
from .splits import SubtaskSplits, make_splits

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "ArrayImageDataset",
    "FolderImageDataset",
    "ImageDataset",
    "SubtaskDataset",
    "SubtaskSplits",
    "build_augment",
    "cache_dir",
    "data_root",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "read_idx",
    "register_dataset",
]
