"""The data section: the dataset by name, its options, the image size."""

from __future__ import annotations

from meta.data import DATASETS, decodes_image_files, loader_options

from ..config import DataConfig
from ..errors import ConfigError
from .options import check_options, known, positive


def check_data(dc: DataConfig) -> None:
    known("data.dataset", dc.dataset, DATASETS)
    check_options("data.options", dc.options, loader_options(dc.dataset), f"dataset {dc.dataset}")
    if dc.image_size is not None:
        positive("data.image_size", dc.image_size, 8)
    if dc.skip_bad_images and not decodes_image_files(dc.dataset):
        readers = ", ".join(n for n in DATASETS if decodes_image_files(n))
        raise ConfigError(f"data.skip_bad_images: dataset {dc.dataset} is not read from image files, so there are no "
                          f"bad images to skip; it applies to {readers}. Remove it", key="data.skip_bad_images")
