"""miniImageNet (Vinyals et al. 2016) with the class splits of Ravi & Larochelle (2017): 64/16/20 classes
of 600 images each.

Layout::

    <root>/mini-imagenet/images/<image_name>                 (Ravi's flat folder)
    <root>/mini-imagenet/images/<class_name>/<image_name>    (or one folder per class)
    <root>/splits/mini-imagenet/mini_{train,val,test}.csv     (or data.split_dir; or
                                                               <root>/mini-imagenet/{train,val,test}.csv)

Each CSV row names one image and its class: header ``class_name,image_name`` (or Ravi's
``filename,label``).  Images are converted to RGB, resized to ``image_size`` (84 by default) and decoded
once into a disk cache; the split files are re-read on every load.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from .base import DatasetError, FewShotDataset
from .decode import decode_images
from .common import SPLITS, Built, cached_dataset, find_split_file, require_root
from .registry import DATASETS

log = logging.getLogger(__name__)

COLUMNS = (("class_name", "image_name"), ("label", "filename"))  # (class column, image column)


def _read_csv(path: Path) -> list[tuple[str, str]]:
    """(class name, image name) per row of a split CSV."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        for cls, img in COLUMNS:
            if {cls, img} <= fields:
                return [(row[cls].strip(), row[img].strip()) for row in reader if row[img]]
    raise DatasetError(f"{path}: expected a header 'class_name,image_name' (or 'filename,label'), "
                       f"got '{','.join(reader.fieldnames or [])}'")


def _files_in(folder: Path) -> set[str]:
    with os.scandir(folder) as it:
        return {e.name for e in it if e.is_file()}


@DATASETS.register("mini_imagenet")
def load_mini_imagenet(root: Path | None, *, image_size: int = 84, split_dir: Path | None = None,
                       cache_dir: Path | None = None, skip_bad_images: bool = False) -> FewShotDataset:
    root = require_root(root, "mini_imagenet", "mini-imagenet/images/")
    images_dir = root / "mini-imagenet" / "images"
    if not images_dir.is_dir():
        raise DatasetError(f"miniImageNet images not found: {images_dir} is not a folder; set data.root to "
                           f"the folder that holds mini-imagenet/images/")

    rows: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS:
        if split_dir:
            candidates = [Path(split_dir) / f"mini_{split}.csv", Path(split_dir) / f"{split}.csv"]
        else:
            candidates = [root / "splits" / "mini-imagenet" / f"mini_{split}.csv",
                          root / "mini-imagenet" / f"{split}.csv"]
        rows[split] = _read_csv(find_split_file("mini_imagenet", candidates,
                                                "mini_train.csv, mini_val.csv and mini_test.csv"))

    # classes in order of first appearance (train, val, test); an image listed twice is kept once
    all_rows = list(dict.fromkeys(row for split_rows in rows.values() for row in split_rows))
    class_names = list(dict.fromkeys(cls for cls, _ in all_rows))
    index = {name: i for i, name in enumerate(class_names)}
    splits = {split: list(dict.fromkeys(index[cls] for cls, _ in split_rows))
              for split, split_rows in rows.items()}

    flat = _files_in(images_dir)
    per_class: dict[str, set[str]] = {}
    files, labels, missing = [], [], []
    for cls, img in all_rows:
        if img in flat:
            files.append(images_dir / img)
        else:
            if cls not in per_class:
                per_class[cls] = _files_in(images_dir / cls) if (images_dir / cls).is_dir() else set()
            if img not in per_class[cls]:
                missing.append(f"{img} (class {cls})")
                continue
            files.append(images_dir / cls / img)
        labels.append(index[cls])
    if missing:
        raise DatasetError(f"miniImageNet: {len(missing)} of {len(files) + len(missing)} images named in the "
                           f"split files are missing from {images_dir} (first: {missing[0]}); the images belong "
                           f"in {images_dir}/<image_name> or {images_dir}/<class_name>/<image_name>")

    def build() -> Built:
        log.info("decoding %d miniImageNet images at %dx%d", len(files), image_size, image_size)
        decoded = decode_images(files, labels, image_size, mode="RGB", skip_bad=skip_bad_images)
        return decoded.images, decoded.labels, class_names, decoded.info()

    ds = cached_dataset("mini_imagenet", root, image_size, cache_dir, files, build,
                        classes=class_names, labels=labels, skip_bad=skip_bad_images)
    ds.splits = splits  # from the current split files, never from the cache
    return ds
