"""Datasets: the paper's registry, loaders for named datasets and user files, split and scaling.

The registry loads at once (the command line lists its names in help texts); the loaders and
scalers load on first use, so that listing names does not import pandas and scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from softbits.data.registry import DATASETS, PAPER_DATASETS, DatasetInfo, dataset_names, get_dataset_info
from softbits.lazy import lazy_exports

if TYPE_CHECKING:  # the type checker sees the real names; at run time they load on first use
    from softbits.data.loading import (
        CACHE_DIR_ENV,
        DATA_DIR_ENV,
        Dataset,
        frame_to_dataset,
        generate_friedman1,
        load_dataset,
        load_table,
    )
    from softbits.data.splits import Split, Standardizer, scale_split, split_and_scale

_LAZY = {
    "CACHE_DIR_ENV": "softbits.data.loading",
    "DATA_DIR_ENV": "softbits.data.loading",
    "Dataset": "softbits.data.loading",
    "frame_to_dataset": "softbits.data.loading",
    "generate_friedman1": "softbits.data.loading",
    "load_dataset": "softbits.data.loading",
    "load_table": "softbits.data.loading",
    "Split": "softbits.data.splits",
    "Standardizer": "softbits.data.splits",
    "scale_split": "softbits.data.splits",
    "split_and_scale": "softbits.data.splits",
}

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
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


__getattr__, __dir__ = lazy_exports(globals(), _LAZY, __all__)
