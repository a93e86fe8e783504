"""Helpers the folder-based loaders share: data root and split-file checks, class lookup, the cached build."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .base import DatasetError, FewShotDataset, pixel_stats
from .cache import cache_key, folder_fingerprint, load_or_build

SPLITS = ("train", "val", "test")

# what the build callback of cached_dataset returns: images, labels, class names, info
Built = tuple[torch.Tensor, torch.Tensor, list[str], dict]


def require_root(root: Path | None, dataset: str, holds: str) -> Path:
    if root is None:
        raise DatasetError(f"{dataset} needs a data root: set data.root in the config or FSNAS_DATA_ROOT "
                           f"to the folder that holds {holds}")
    return Path(root)


def find_split_file(dataset: str, candidates: list[Path], hint: str) -> Path:
    """The first existing file of ``candidates``, or a DatasetError naming them all."""
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(f"{dataset} split file not found (looked for {' and '.join(map(str, candidates))}); "
                       f"set data.split_dir to the folder that holds {hint}")


def read_names(path: Path) -> list[str]:
    """The non-empty lines of a split file, stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def class_indices(names: list[str], index: dict[str, int], source: Path, where: str) -> list[int]:
    """Class indices of ``names``; a DatasetError naming those that ``index`` lacks."""
    missing = [n for n in names if n not in index]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DatasetError(f"{source} names {len(missing)} classes not found {where}: {shown}")
    return [index[n] for n in names]


def cached_dataset(dataset: str, root: Path, image_size: int, cache_dir: Path | None, sources: list[Path],
                   build: Callable[[], Built], **key_parts) -> FewShotDataset:
    """Build (or read from the disk cache) a dataset without splits; the caller sets ``ds.splits``.

    The cache key holds the data root, the image size, a fingerprint of the ``sources`` files and
    ``key_parts``, so a changed folder or option decodes again.
    """
    def make() -> FewShotDataset:
        images, labels, class_names, info = build()
        mean, std = pixel_stats(images)
        return FewShotDataset(name=dataset, images=images, labels=labels, class_names=class_names, splits={},
                              mean=mean, std=std, info={"root": str(root), **info})

    fingerprint = folder_fingerprint(sources[:: max(1, len(sources) // 500)]) | {
        "n": len(sources), "all": cache_key(names=[str(s) for s in sources])}
    key = cache_key(dataset=dataset, root=str(root.resolve()), size=image_size, files=fingerprint, **key_parts)
    return load_or_build(cache_dir, key, make)
