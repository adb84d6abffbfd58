"""Datasets: the paper's registry, loaders for named datasets and user files, split and scaling."""

from softbits.data.loading import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    Dataset,
    frame_to_dataset,
    generate_friedman1,
    load_dataset,
    load_table,
)
from softbits.data.registry import DATASETS, PAPER_DATASETS, DatasetInfo, dataset_names, get_dataset_info
from softbits.data.splits import Split, Standardizer, scale_split, split_and_scale

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DATASETS",
    "PAPER_DATASETS",
    "Dataset",
    "DatasetInfo",
    "Split",
    "Standardizer",
    "dataset_names",
    "frame_to_dataset",
    "generate_friedman1",
    "get_dataset_info",
    "load_dataset",
    "load_table",
    "scale_split",
    "split_and_scale",
]
