"""In-memory few-shot datasets: decoded once into uint8 tensors, split by class.

Every loader (Omniglot, miniImageNet, CIFAR-FS, FC100, ImageFolder, synthetic) produces a
``FewShotDataset``: one uint8 tensor holding all images, a label per image, the class names and,
per split, which classes belong to it.  Sampling an episode is then tensor indexing, not PNG decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class DatasetError(ValueError):
    """A dataset could not be built from what is on disk or in the config; the message says how to fix it."""


@dataclass(frozen=True)
class ClassSplit:
    """The classes of one split (train / val / test) as a view over the dataset's images.

    ``rotations`` > 1 turns every class into that many classes (the image rotated by 0, 90, 180, 270
    degrees), the Omniglot augmentation of MAML and ProtoNet.
    """

    name: str
    class_ids: torch.Tensor  # int64 [C], indices into FewShotDataset.class_names
    image_index: torch.Tensor  # int64 [C, max_images], indices into FewShotDataset.images, -1 pads
    image_counts: torch.Tensor  # int64 [C]
    rotations: int = 1

    @property
    def num_classes(self) -> int:
        return int(self.class_ids.numel()) * self.rotations

    @property
    def min_images_per_class(self) -> int:
        return int(self.image_counts.min()) if self.image_counts.numel() else 0

    @property
    def num_images(self) -> int:
        return int(self.image_counts.sum()) * self.rotations

    def base_class(self, virtual_class: int) -> tuple[int, int]:
        """Row of ``image_index`` and quarter turns for a (possibly rotated) class number."""
        return virtual_class % int(self.class_ids.numel()), virtual_class // int(self.class_ids.numel())


@dataclass
class FewShotDataset:
    """All images of a dataset held in memory, plus the class splits.

    images: uint8 [N, C, H, W]; labels: int64 [N] indexing ``class_names``;
    splits: split name -> list of class indices; mean/std: per-channel normalisation of [0, 1] pixels.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    splits: dict[str, list[int]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_rotations: int = 1
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(f"{self.name}: images must be a uint8 tensor [N, C, H, W], got "
                               f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"{self.name}: {self.labels.numel()} labels for {self.images.shape[0]} images")
        # a cache written before constant channels got std 1 may hold a 0 there
        self.std = tuple(v if v >= MIN_STD else 1.0 for v in self.std)
        self._split_cache: dict[str, ClassSplit] = {}
        self._device_images: dict[str, torch.Tensor] = {}

    def images_on(self, device: torch.device | str) -> torch.Tensor:
        """The uint8 images on ``device``, copied there once (the copy is kept for the dataset's life)."""
        device = torch.device(device)
        if device == self.images.device:
            return self.images
        key = str(device)
        if key not in self._device_images:
            self._device_images[key] = self.images.to(device)
        return self._device_images[key]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> ClassSplit:
        if name not in self.splits:
            raise DatasetError(f"dataset '{self.name}' has no split '{name}'; its splits are "
                               f"{', '.join(sorted(self.splits))}")
        if name not in self._split_cache:
            rotations = self.train_rotations if name == "train" else 1
            self._split_cache[name] = _build_split(name, self.splits[name], self.labels, rotations)
        return self._split_cache[name]

    def describe(self) -> dict:
        """Classes and images per split, as ``fsnas data`` shows them."""
        out = {"dataset": self.name, "image_shape": list(self.image_shape), "splits": {}}
        if "skipped_images" in self.info:  # unreadable image files left out (skip_bad_images)
            out["skipped_images"] = self.info["skipped_images"]
        for name in self.splits:
            s = self.split(name)
            out["splits"][name] = {
                "classes": s.num_classes,
                "base_classes": int(s.class_ids.numel()),
                "rotations": s.rotations,
                "images": s.num_images,
                "min_images_per_class": s.min_images_per_class,
                "max_images_per_class": int(s.image_counts.max()) if s.image_counts.numel() else 0,
            }
        return out


def _build_split(name: str, class_ids: list[int], labels: torch.Tensor, rotations: int) -> ClassSplit:
    ids = torch.as_tensor(class_ids, dtype=torch.long)
    order = torch.argsort(labels, stable=True)
    counts_all = torch.bincount(labels, minlength=int(ids.max()) + 1 if ids.numel() else 0)
    starts = torch.cumsum(counts_all, 0) - counts_all
    counts = counts_all[ids] if ids.numel() else torch.zeros(0, dtype=torch.long)
    width = int(counts.max()) if counts.numel() else 0
    index = torch.full((ids.numel(), width), -1, dtype=torch.long)
    for row, (cid, n) in enumerate(zip(ids.tolist(), counts.tolist())):
        index[row, :n] = order[int(starts[cid]): int(starts[cid]) + n]
    return ClassSplit(name=name, class_ids=ids, image_index=index, image_counts=counts, rotations=rotations)


MIN_STD = 1e-3  # of [0, 1] pixels: below it a channel is treated as constant


def pixel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1] (computed in chunks to bound memory).  A
    channel that (nearly) never varies, such as a blank colour channel, gets std 1: dividing by its ~0 std
    (0 once rounded) would make every image NaN or blow up its noise."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    n = 0
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        total_sq += (x * x).sum(1)
        n += x.shape[1]
    mean = total / max(n, 1)
    std = (total_sq / max(n, 1) - mean * mean).clamp_min(0.0).sqrt()
    return (tuple(round(float(v), 4) for v in mean),
            tuple(round(float(v), 4) if v >= MIN_STD else 1.0 for v in std))
