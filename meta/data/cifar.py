"""CIFAR-FS (Bertinetto et al. 2019) and FC100 (Oreshkin et al. 2018): few-shot class splits of CIFAR-100.

Layout (CIFAR-100's python version, as torchvision unpacks it; ``data.download: true`` fetches it)::

    <root>/cifar-100-python/{train,test,meta}
    <root>/splits/cifar-fs/{train,val,test}.json   lists of [superclass, class] pairs: 64/16/20 classes
    <root>/splits/fc100/{train,val,test}.json      lists of superclass names: 12/4/4 superclasses,
                                                   each standing for its 5 classes (60/20/20 classes)

``data.split_dir`` replaces the split folder.  CIFAR-100's train and test images are pooled, 600 per class;
they are resized to ``image_size`` (32 by default, no resizing) and kept in a disk cache.  The CIFAR files
are pickles: they are read by an unpickler that accepts numpy arrays, lists, numbers and strings only.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from .base import DatasetError, FewShotDataset
from .common import SPLITS, Built, cached_dataset, class_indices, find_split_file, require_root
from .registry import DATASETS

log = logging.getLogger(__name__)

FOLDER = "cifar-100-python"
FILES = ("train", "test", "meta")

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

# every global a CIFAR-100 pickle refers to (numpy's array reconstruction); nothing else is ever loaded
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and refuses every other global."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(f"refusing to unpickle {module}.{name}: a CIFAR-100 file holds only numpy "
                               f"arrays, lists and strings") from None


def load_pickle(path: Path) -> dict:
    """A CIFAR-100 python file as a dict, through ``ArrayUnpickler`` (never plain ``pickle.load``)."""
    try:
        with path.open("rb") as f:
            blob = ArrayUnpickler(f, encoding="latin1").load()
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} is not a readable CIFAR-100 python file ({exc}); delete it and "
                           f"download CIFAR-100 again") from None
    if not isinstance(blob, dict):
        raise DatasetError(f"{path} is not a CIFAR-100 python file (holds a {type(blob).__name__}, not a dict)")
    return blob


def _field(blob: dict, key: str, path: Path):
    if key not in blob:
        raise DatasetError(f"{path} lacks '{key}'; it is not a CIFAR-100 python file")
    return blob[key]


def _text(name) -> str:
    return name.decode("latin1") if isinstance(name, bytes) else str(name)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return torch.cat([F.interpolate(chunk.float(), size=(size, size), mode="bicubic", antialias=True)
                      .round_().clamp_(0, 255).to(torch.uint8) for chunk in images.split(1024)])


def _read_cifar100(folder: Path, image_size: int) -> Built:
    """All 60000 images (train then test), fine labels, fine class names and the fine -> coarse map."""
    meta_path = folder / "meta"
    meta = load_pickle(meta_path)
    fine_names = [_text(n) for n in _field(meta, "fine_label_names", meta_path)]
    coarse_names = [_text(n) for n in _field(meta, "coarse_label_names", meta_path)]
    data, fine, coarse = [], [], []
    for part in ("train", "test"):
        path = folder / part
        blob = load_pickle(path)
        data.append(np.asarray(_field(blob, "data", path), dtype=np.uint8).reshape(-1, 3, 32, 32))
        fine.append(np.asarray(_field(blob, "fine_labels", path), dtype=np.int64))
        coarse.append(np.asarray(_field(blob, "coarse_labels", path), dtype=np.int64))
    images = _resize(torch.from_numpy(np.concatenate(data)), image_size)
    labels, coarse_labels = torch.from_numpy(np.concatenate(fine)), torch.from_numpy(np.concatenate(coarse))
    coarse_of = torch.full((len(fine_names),), -1, dtype=torch.long)
    coarse_of[labels] = coarse_labels
    return images, labels, fine_names, {"coarse_names": coarse_names, "coarse_of": coarse_of.tolist()}


def _load(dataset: str, root: Path | None, image_size: int, split_dir: Path | None, download: bool,
          cache_dir: Path | None) -> tuple[FewShotDataset, Path]:
    """CIFAR-100 as a dataset without splits (shared by both loaders, one cache entry), and the split folder."""
    root = require_root(root, dataset, f"{FOLDER}/")
    folder = root / FOLDER
    sources = [folder / name for name in FILES]
    if not all(p.is_file() for p in sources):
        if not download:
            raise DatasetError(f"CIFAR-100 not found under {folder} (expected {', '.join(FILES)}); set data.root "
                               f"to the folder that holds {FOLDER}/, or set data.download: true when online")
        log.info("downloading CIFAR-100 to %s", root)
        try:  # torchvision's download checks the archive's md5; its CIFAR100 class is not used to read the files
            download_and_extract_archive(CIFAR100.url, str(root), filename=CIFAR100.filename, md5=CIFAR100.tgz_md5)
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"could not download CIFAR-100 to {root} ({exc}); download {CIFAR100.url} and "
                               f"unpack it there by hand") from None
        if not all(p.is_file() for p in sources):
            raise DatasetError(f"the CIFAR-100 download did not yield {', '.join(map(str, sources))}")
    ds = cached_dataset("cifar100", root, image_size, cache_dir, sources,
                        lambda: _read_cifar100(folder, image_size))
    ds.name = dataset
    split_dir = Path(split_dir) if split_dir else root / "splits" / dataset.replace("_", "-")
    return ds, split_dir


def _split_json(dataset: str, split_dir: Path, split: str) -> tuple[Path, list]:
    path = find_split_file(dataset, [split_dir / f"{split}.json"], "train.json, val.json and test.json")
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(names, list):
        raise DatasetError(f"{path} must hold a JSON list, not a {type(names).__name__}")
    return path, names


@DATASETS.register("cifar_fs")
def load_cifar_fs(root: Path | None, *, image_size: int = 32, split_dir: Path | None = None,
                  download: bool = False, cache_dir: Path | None = None) -> FewShotDataset:
    ds, split_dir = _load("cifar_fs", root, image_size, split_dir, download, cache_dir)
    index = {name: i for i, name in enumerate(ds.class_names)}
    splits = {}
    for split in SPLITS:
        path, items = _split_json("cifar_fs", split_dir, split)
        names = [item[-1] if isinstance(item, list) else item for item in items]  # [superclass, class] or class
        splits[split] = class_indices(names, index, path, "among CIFAR-100's classes")
    ds.splits = splits  # from the current split files, never from the cache
    return ds


@DATASETS.register("fc100")
def load_fc100(root: Path | None, *, image_size: int = 32, split_dir: Path | None = None,
               download: bool = False, cache_dir: Path | None = None) -> FewShotDataset:
    ds, split_dir = _load("fc100", root, image_size, split_dir, download, cache_dir)
    coarse_of = ds.info["coarse_of"]
    index = {name: i for i, name in enumerate(ds.info["coarse_names"])}
    splits = {}
    for split in SPLITS:
        path, superclasses = _split_json("fc100", split_dir, split)
        coarse = class_indices(superclasses, index, path, "among CIFAR-100's superclasses")
        splits[split] = [fine for c in coarse for fine, of in enumerate(coarse_of) if of == c]
    ds.splits = splits  # from the current split files, never from the cache
    return ds
