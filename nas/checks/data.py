"""The data section: the dataset by name, its options, the image size."""

from __future__ import annotations

from meta.data import DATASETS, loader_options

from ..config import DataConfig
from .options import check_options, known, positive


def check_data(dc: DataConfig) -> None:
    known("data.dataset", dc.dataset, DATASETS)
    check_options("data.options", dc.options, loader_options(dc.dataset), f"dataset {dc.dataset}")
    if dc.image_size is not None:
        positive("data.image_size", dc.image_size, 8)
