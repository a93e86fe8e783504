"""Few-shot datasets held in memory as uint8 tensors, with their class splits.  A new dataset is one module
here whose loader is decorated with ``@DATASETS.register(name)``."""

from __future__ import annotations

import inspect
from pathlib import Path

from fsnas_core.plugins import import_submodules

from .base import ClassSplit, DatasetError, FewShotDataset, pixel_stats
from .registry import DATASETS

import_submodules(__name__, __path__)  # every loader module registers itself in DATASETS

COMMON_ARGS = ("root", "image_size", "split_dir", "download", "cache_dir", "skip_bad_images")


def loader_options(name: str) -> dict[str, inspect.Parameter]:
    """The dataset-specific keyword options of a loader (what ``data.options`` may hold)."""
    params = inspect.signature(DATASETS[name]).parameters
    return {k: p for k, p in params.items() if k not in COMMON_ARGS}


def decodes_image_files(name: str) -> bool:
    """Whether dataset ``name`` is read from image files (and so can leave out unreadable ones)."""
    return "skip_bad_images" in inspect.signature(DATASETS[name]).parameters


def load_dataset(name: str, root: str | Path | None = None, *, image_size: int | None = None,
                 split_dir: str | Path | None = None, download: bool = False,
                 cache_dir: str | Path | None = None, skip_bad_images: bool = False, **options) -> FewShotDataset:
    """Build dataset ``name``; common arguments the loader does not take are dropped, unknown options raise."""
    loader = DATASETS[name]
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(loader_options(name)))
    if unknown:
        raise DatasetError(f"dataset '{name}' takes no option {', '.join(unknown)}; "
                           f"its options are {', '.join(loader_options(name)) or 'none'}")
    common = {"root": Path(root) if root else None, "image_size": image_size,
              "split_dir": Path(split_dir) if split_dir else None, "download": download,
              "cache_dir": Path(cache_dir) if cache_dir else None, "skip_bad_images": skip_bad_images}
    if skip_bad_images and not decodes_image_files(name):
        raise DatasetError(f"dataset '{name}' decodes no image files, so it has no bad images to skip; "
                           f"skip_bad_images applies to {', '.join(n for n in DATASETS if decodes_image_files(n))}")
    kwargs = {k: v for k, v in common.items() if k in params and not (k == "image_size" and v is None)}
    return loader(**kwargs, **options)


__all__ = ["ClassSplit", "DATASETS", "DatasetError", "FewShotDataset", "decodes_image_files", "load_dataset",
           "loader_options", "pixel_stats"]
