"""The few-shot objective of search: a ProtoNet head on an episode, for any feature function."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from meta.episodes import Episode
from meta.learners import prototype_logits, prototypes

Features = Callable[[torch.Tensor], torch.Tensor]


def episode_logits(features: Features, ep: Episode) -> torch.Tensor:
    # support and query in one batch, so BatchNorm statistics are the episode's
    feats = features(torch.cat([ep.support_x, ep.query_x])).flatten(1)
    n = len(ep.support_y)
    return prototype_logits(feats[n:], prototypes(feats[:n], ep.support_y, ep.n_way))


def episode_loss(features: Features, ep: Episode) -> tuple[torch.Tensor, float]:
    """Query cross-entropy and accuracy of a ProtoNet head on ``features`` for one episode."""
    logits = episode_logits(features, ep)
    acc = float((logits.detach().argmax(-1) == ep.query_y).float().mean())
    return F.cross_entropy(logits, ep.query_y), acc
