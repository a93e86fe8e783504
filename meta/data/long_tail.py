"""Long-tailed versions of a split: class i of C keeps n_i = n_max * (1/rho)^(i/(C-1)) images (the
exponential profile of Cui et al., 2019), the order of classes and the images kept drawn from a seed.

``heldout`` images of every class are set aside first, as a balanced ``<split>_heldout`` split of the same
classes (base-class accuracy is measured there, on images never trained on); the profile runs over the
rest.  The images the profile drops are used by neither."""

from __future__ import annotations

import torch

from .base import ClassSplit, DatasetError, FewShotDataset


def exponential_profile(n_max: int, classes: int, imbalance: float) -> list[int]:
    """Images per class, most to fewest: n_max down to n_max / imbalance (at least 1)."""
    if imbalance < 1:
        raise DatasetError(f"imbalance must be >= 1 (n_max / n_min), got {imbalance}")
    if classes == 1:
        return [n_max]
    return [max(1, int(n_max * imbalance ** (-i / (classes - 1)))) for i in range(classes)]


def make_long_tailed(ds: FewShotDataset, split: str, imbalance: float, seed: int = 0,
                     heldout: int = 0) -> FewShotDataset:
    """``ds`` with ``split`` long-tailed (in place) and, with ``heldout`` > 0, ``<split>_heldout`` holding that
    many images of every class."""
    base = ds.split(split)
    rows = int(base.class_ids.numel())
    if heldout < 0 or heldout >= base.min_images_per_class:
        raise DatasetError(f"heldout must be >= 0 and leave every class of '{split}' an image to train on (its "
                           f"smallest class has {base.min_images_per_class}), got {heldout}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(rows, generator=g)  # which class is the head, which the tail
    available = base.image_counts - heldout
    profile = exponential_profile(int(available.max()), rows, imbalance)
    keep = torch.zeros(rows, dtype=torch.long)
    for rank, row in enumerate(order.tolist()):
        keep[row] = min(profile[rank], int(available[row]))
    kept = torch.full_like(base.image_index, -1)
    held = torch.full_like(base.image_index, -1)
    for row in range(rows):
        n, k = int(base.image_counts[row]), int(keep[row])
        images = base.image_index[row, :n][torch.randperm(n, generator=g)]
        held[row, :heldout], kept[row, :k] = images[:heldout], images[heldout: heldout + k]
    ds._split_cache[split] = ClassSplit(split, base.class_ids, kept, keep, base.rotations)
    if heldout:
        name = f"{split}_heldout"
        ds._split_cache[name] = ClassSplit(name, base.class_ids, held[:, :heldout],
                                           torch.full((rows,), heldout, dtype=torch.long), base.rotations)
        ds.splits[name] = ds.splits[split]
    ds.info["long_tail"] = {"split": split, "imbalance": imbalance, "seed": seed, "heldout_per_class": heldout,
                            "images_kept": int(keep.sum())}
    return ds
