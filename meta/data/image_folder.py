"""Any labelled image collection in ImageFolder layout, split by class as you choose.

Layout::

    <root>/<folder>/<class>/<image>.{png,jpg,jpeg,bmp,webp}     (sub-folders of a class are searched too)
    <split_dir>/train.txt, test.txt and, optionally, val.txt     (one class folder name per line)

``options.folder`` is the folder under the data root that holds the class folders ('' means the data root
itself); ``options.channels`` is 3 (RGB) or 1 (grayscale).  ``data.split_dir`` is required: a class split
is a choice you make, so none is guessed.  Images are resized to ``image_size`` x ``image_size`` and
decoded once into a disk cache; the split files are re-read on every load, so editing them costs no
re-decoding.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import DatasetError, FewShotDataset
from .common import SPLITS, Built, cached_dataset, class_indices, find_split_file, read_names, require_root
from .decode import decode_images
from .registry import DATASETS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _class_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@DATASETS.register("image_folder")
def load_image_folder(root: Path | None, *, image_size: int = 84, split_dir: Path | None = None,
                      cache_dir: Path | None = None, skip_bad_images: bool = False, folder: str = "",
                      channels: int = 3) -> FewShotDataset:
    root = require_root(root, "image_folder", "your dataset folder")
    if channels not in (1, 3):
        raise DatasetError(f"image_folder channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if split_dir is None:
        raise DatasetError("image_folder needs data.split_dir: a folder with train.txt, test.txt and optionally "
                           "val.txt, each listing the class folder names of that split, one per line")
    base = root / folder if folder else root
    if not base.is_dir():
        raise DatasetError(f"image_folder: {base} is not a folder; set data.root (and options.folder) to the "
                           f"folder that holds one sub-folder per class")
    class_names, files, labels = [], [], []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        images = _class_images(class_dir)
        if images:
            labels += [len(class_names)] * len(images)
            class_names.append(class_dir.name)
            files += images
    if not class_names:
        raise DatasetError(f"image_folder: no class folder under {base} holds "
                           f"{'/'.join(IMAGE_EXTENSIONS)} images")

    index = {name: i for i, name in enumerate(class_names)}
    split_dir = Path(split_dir)
    splits = {}
    for split in SPLITS:
        path = split_dir / f"{split}.txt"
        if split == "val" and not path.exists():
            continue
        path = find_split_file("image_folder", [path], "train.txt, test.txt and optionally val.txt")
        splits[split] = class_indices(read_names(path), index, path,
                                      f"under {base} (or holding no {'/'.join(IMAGE_EXTENSIONS)} images)")

    def build() -> Built:
        log.info("decoding %d images of %d classes from %s at %dx%d", len(files), len(class_names), base,
                 image_size, image_size)
        decoded = decode_images(files, labels, image_size, mode="RGB" if channels == 3 else "L",
                                skip_bad=skip_bad_images)
        return decoded.images, decoded.labels, class_names, {"folder": folder, **decoded.info()}

    ds = cached_dataset("image_folder", base, image_size, cache_dir, files, build, channels=channels,
                        classes=class_names, skip_bad=skip_bad_images)
    ds.splits = splits  # from the current split files, never from the cache
    return ds
