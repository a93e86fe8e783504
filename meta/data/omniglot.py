"""Omniglot (Lake et al. 2015) through torchvision, from its zips or from already extracted folders.

Class splits: ``vinyals`` (1028/172/423 characters, read from a split folder such as
``<root>/splits/omniglot-vinyals/{train,val,test}.txt``) or ``background`` (964 background characters
for training, 659 evaluation characters for testing, no validation split).  Training classes are
multiplied by rotations of 90/180/270 degrees, as in MAML and ProtoNet.
"""

from __future__ import annotations

import logging
from os.path import isdir, join
from pathlib import Path

from torchvision.datasets import Omniglot

from .base import DatasetError, FewShotDataset
from .common import SPLITS, Built, cached_dataset, class_indices, find_split_file, read_names, require_root
from .decode import decode_images
from .registry import DATASETS

log = logging.getLogger(__name__)

SUBSETS = ("images_background", "images_evaluation")


class OmniglotFolder(Omniglot):
    """torchvision's Omniglot that also accepts the extracted ``images_*`` folders without their zips."""

    def _check_integrity(self) -> bool:
        return isdir(join(self.root, self._get_target_folder())) or super()._check_integrity()


@DATASETS.register("omniglot")
def load_omniglot(root: Path | None, *, image_size: int = 28, split_dir: Path | None = None,
                  download: bool = False, cache_dir: Path | None = None, skip_bad_images: bool = False,
                  scheme: str = "vinyals", rotations: bool = True) -> FewShotDataset:
    root = require_root(root, "omniglot", "omniglot-py/")
    if scheme not in ("vinyals", "background"):
        raise DatasetError(f"omniglot scheme '{scheme}' is unknown; use 'vinyals' or 'background'")
    subsets = []
    for background in (True, False):
        try:
            subsets.append(OmniglotFolder(str(root), background=background, download=download))
        except RuntimeError:
            raise DatasetError(f"omniglot not found under {root}/omniglot-py (expected images_background/ and "
                               f"images_evaluation/ or their zips); set data.root to the folder that holds "
                               f"omniglot-py/, or set data.download: true when online") from None
    files, classes, labels = [], [], []
    for sub, subset in zip(subsets, SUBSETS):
        offset = len(classes)
        classes += [f"{subset}/{char}" for char in sub._characters]
        for image_name, cid in sub._flat_character_images:
            files.append(Path(sub.target_folder) / sub._characters[cid] / image_name)
            labels.append(offset + cid)

    if scheme == "vinyals":
        split_dir = Path(split_dir) if split_dir else root / "splits" / "omniglot-vinyals"
        index = {name: i for i, name in enumerate(classes)}
        splits = {}
        for split in SPLITS:
            path = find_split_file("omniglot", [split_dir / f"{split}.txt"],
                                   "train.txt/val.txt/test.txt, or use options.scheme: background")
            splits[split] = class_indices(read_names(path), index, path, f"under {root}/omniglot-py")
    else:
        n_bg = len(subsets[0]._characters)
        splits = {"train": list(range(n_bg)), "test": list(range(n_bg, len(classes)))}

    def build() -> Built:
        log.info("decoding %d Omniglot images at %dx%d", len(files), image_size, image_size)
        decoded = decode_images(files, labels, image_size, mode="L", skip_bad=skip_bad_images)
        return decoded.images, decoded.labels, classes, {"scheme": scheme, **decoded.info()}

    ds = cached_dataset("omniglot", root, image_size, cache_dir, files, build, skip_bad=skip_bad_images)
    # splits and rotations come from the current files and options, never from the cache
    ds.splits, ds.train_rotations = splits, (4 if rotations else 1)
    return ds
