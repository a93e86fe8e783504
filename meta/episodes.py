"""Seeded N-way K-shot Q-query episodes drawn from one class split.

Episode ``i`` of a sampler depends only on ``(seed, i)``, never on what was drawn before, so a
resumed run sees exactly the episodes an uninterrupted run would, and two methods evaluated with the
same seed see the same test episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .data.base import ClassSplit, DatasetError, FewShotDataset
from .shot_profiles import SHOT_PROFILES, shot_counts

# Large odd multiplier to spread (seed, index) pairs over the generator's seed space.
_MIX = 0x9E3779B97F4A7C15


@dataclass
class Episode:
    """Support and query images (float, normalised) with labels 0..n_way-1.

    ``classes`` holds the split-local class numbers (rotated classes included), used e.g. to pick hard
    classes for new tasks.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    @property
    def n_way(self) -> int:
        return int(self.classes.numel())

    def to(self, device: torch.device | str) -> "Episode":
        return Episode(*(t.to(device, non_blocking=True) for t in
                         (self.support_x, self.support_y, self.query_x, self.query_y, self.classes)))


class EpisodeSampler:
    """Draws episodes of ``n_way`` classes with ``k_shot`` support and ``n_query`` query images each.

    Imbalanced supports: ``k_shot`` may be a sequence of ``n_way`` counts, or ``profile`` (``meta.shot_profiles``:
    linear, step, random) draws each episode's counts between ``min_shot`` and ``k_shot``.  Support images are
    grouped by class in label order.
    """

    def __init__(self, dataset: FewShotDataset, split: str, n_way: int, k_shot: int | Sequence[int],
                 n_query: int, seed: int = 0, length: int | None = None, profile: str = "balanced",
                 min_shot: int = 1, device: torch.device | str | None = None) -> None:
        self.split: ClassSplit = dataset.split(split)
        self.shots = [int(k_shot)] * n_way if isinstance(k_shot, int) else [int(k) for k in k_shot]
        if profile != "balanced" and not isinstance(k_shot, int):
            raise ValueError("give either per-class shot counts or a shot profile, not both")
        SHOT_PROFILES[profile]  # reject an unknown name now
        if profile != "balanced" and not 1 <= min_shot <= int(k_shot):
            raise DatasetError(f"min_shot must be between 1 and k_shot ({k_shot}), got {min_shot}")
        self.profile, self.min_shot = profile, int(min_shot)
        self.n_way, self.n_query, self.seed, self.length = int(n_way), int(n_query), int(seed), length
        check_episode_fits(self.split, self.n_way, self.shots, self.n_query, dataset.name)
        # device: episodes are gathered and normalised there from the dataset's uint8 images, moved once per
        # dataset and device (FewShotDataset.images_on), so no episode is copied from the host
        self.images = dataset.images if device is None else dataset.images_on(device)
        self.mean = torch.tensor(dataset.mean, dtype=torch.float32, device=self.images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, dtype=torch.float32, device=self.images.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this sampler is unbounded; give length= to iterate over it")
        return self.length

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(len(self)))

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * _MIX + index) % (2**63 - 1))

    def episode(self, index: int, classes: Sequence[int] | None = None) -> Episode:
        """Episode ``index``; ``classes`` fixes the split-local classes instead of drawing them."""
        g = self.generator(index)
        if classes is None:
            classes = torch.randperm(self.split.num_classes, generator=g)[: self.n_way]
        classes = torch.as_tensor(classes, dtype=torch.long)
        if classes.numel() != self.n_way:
            raise ValueError(f"an episode needs {self.n_way} classes, got {classes.numel()}")
        shots_per_class = (self.shots if self.profile == "balanced" else
                           shot_counts(self.profile, self.n_way, self.shots[0], self.min_shot, g))
        # the draws per class on the host (the random stream of every earlier version), then one gather of
        # all the episode's images where they live, one rotation per quarter-turn count, one normalisation
        picks, turns, is_support = [], [], []
        for c, shots in zip(classes.tolist(), shots_per_class):
            row, quarter_turns = self.split.base_class(c)
            n = int(self.split.image_counts[row])
            picks.append(self.split.image_index[row, torch.randperm(n, generator=g)[: shots + self.n_query]])
            turns += [quarter_turns] * (shots + self.n_query)
            is_support += [True] * shots + [False] * self.n_query
        dev = self.images.device
        x = self.images[torch.cat(picks).to(dev)]
        turns_t = torch.tensor(turns, device=dev)
        for k in sorted(set(turns) - {0}):
            rotate = turns_t == k
            x[rotate] = torch.rot90(x[rotate], k, dims=(2, 3))
        x = self._normalise(x)
        support = torch.tensor(is_support, device=dev)
        labels = torch.arange(self.n_way, device=dev)
        return Episode(
            support_x=x[support],
            support_y=labels.repeat_interleave(torch.tensor(shots_per_class, device=dev)),
            query_x=x[~support],
            query_y=labels.repeat_interleave(self.n_query),
            classes=classes.to(dev),
        )

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255.0) - self.mean) / self.std


def check_episode_fits(split: ClassSplit, n_way: int, shots: Sequence[int], n_query: int, dataset: str) -> None:
    """Raise DatasetError when the split cannot provide such episodes (too few classes or images)."""
    if n_way < 2:
        raise DatasetError(f"n_way must be at least 2, got {n_way}")
    if len(shots) != n_way:
        raise DatasetError(f"{len(shots)} shot counts given for a {n_way}-way episode")
    if min(shots) < 1 or n_query < 1:
        raise DatasetError(f"k_shot and n_query must be at least 1 (got shots {list(shots)}, n_query {n_query})")
    if n_way > split.num_classes:
        raise DatasetError(f"n_way {n_way} is larger than the {split.num_classes} classes of split "
                           f"'{split.name}' of {dataset}; lower n_way")
    need = max(shots) + n_query
    if need > split.min_images_per_class:
        raise DatasetError(f"k_shot + n_query = {need} is larger than the {split.min_images_per_class} images "
                           f"of the smallest class of split '{split.name}' of {dataset}; lower k_shot or n_query")
