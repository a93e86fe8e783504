"""Long-tailed versions of a split: class i of C keeps n_i = n_max * (1/rho)^(i/(C-1)) images (the
exponential profile of Cui et al., 2019), the order of classes and the images kept drawn from a seed.

The images a class loses stay in the dataset as the split's held-out part (``<split>_heldout``: the same
classes, the images the long-tailed split does not hold), so base-class accuracy can be measured on
images never trained on, as balanced as the data allows."""

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


def make_long_tailed(ds: FewShotDataset, split: str, imbalance: float, seed: int = 0) -> FewShotDataset:
    """``ds`` with ``split`` long-tailed (in place) and ``<split>_heldout`` holding the images it dropped."""
    base = ds.split(split)
    rows = int(base.class_ids.numel())
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(rows, generator=g)  # which class is the head, which the tail
    profile = exponential_profile(int(base.image_counts.max()), rows, imbalance)
    keep = torch.zeros(rows, dtype=torch.long)
    for rank, row in enumerate(order.tolist()):
        keep[row] = min(profile[rank], int(base.image_counts[row]))
    kept = torch.full_like(base.image_index, -1)
    held = torch.full_like(base.image_index, -1)
    for row in range(rows):
        n, k = int(base.image_counts[row]), int(keep[row])
        images = base.image_index[row, :n][torch.randperm(n, generator=g)]
        kept[row, :k], held[row, : n - k] = images[:k], images[k:]
    heldout = f"{split}_heldout"
    ds._split_cache[split] = ClassSplit(split, base.class_ids, kept, keep, base.rotations)
    ds._split_cache[heldout] = ClassSplit(heldout, base.class_ids, held, base.image_counts - keep, base.rotations)
    ds.splits[heldout] = ds.splits[split]
    ds.info["long_tail"] = {"split": split, "imbalance": imbalance, "seed": seed,
                            "images_kept": int(keep.sum()), "images_held_out": int((base.image_counts - keep).sum())}
    return ds
