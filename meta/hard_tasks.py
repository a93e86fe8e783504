"""Hard-task meta-batch (Sun et al., CVPR 2019, MTL): after a meta-batch, the class each task got most
wrong is recorded, and extra tasks are built from those classes with freshly sampled images.

The MTL authors did not release this part; this follows the variant their paper reports as better:
new images of the failure classes, not the same ones again.  Works with any learner whose training step
reports ``hard_classes`` (see ``Learner.outer_step``)."""

from __future__ import annotations

import torch

from .episodes import Episode, EpisodeSampler

# hard tasks draw from episode indices no ordinary run reaches; below 2**32 because torch's CPU generator
# keeps only the low 32 bits of a seed
HARD_INDEX_OFFSET = 2**31


def hardest_class(logits: torch.Tensor, episode: Episode) -> int:
    """The split-local class whose queries were classified worst (the first of equals)."""
    correct = (logits.argmax(-1) == episode.query_y).float()
    per_class = torch.zeros(episode.n_way).index_add_(0, episode.query_y.cpu(), correct.cpu())
    per_class /= torch.bincount(episode.query_y.cpu(), minlength=episode.n_way).clamp_min(1)
    return int(episode.classes[int(per_class.argmin())])


def hard_episodes(sampler: EpisodeSampler, recorded: list[int], count: int, step: int) -> list[Episode]:
    """``count`` tasks whose classes come from ``recorded`` (the failure classes of one meta-batch); when fewer
    than ``n_way`` distinct classes were recorded, each task holds all of them plus random other classes."""
    pool = list(dict.fromkeys(recorded))  # distinct, in order
    n_way, out = sampler.n_way, []
    for t in range(count):
        index = HARD_INDEX_OFFSET + step * count + t
        g = sampler.generator(index)
        if len(pool) >= n_way:
            classes = [pool[i] for i in torch.randperm(len(pool), generator=g)[:n_way].tolist()]
        else:
            others = [c for c in torch.randperm(sampler.split.num_classes, generator=g).tolist() if c not in pool]
            classes = pool + others[: n_way - len(pool)]
            classes = [classes[i] for i in torch.randperm(n_way, generator=g).tolist()]
        out.append(sampler.episode(index, classes))
    return out
