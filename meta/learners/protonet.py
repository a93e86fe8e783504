"""Prototypical Networks (Snell et al., 2017): classify queries by distance to class-mean embeddings."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batchnorm import use_bn_mode
from ..episodes import Episode
from ..losses import EpisodicLoss
from ..precision import full_precision, upcast
from .base import Learner
from .registry import LEARNERS


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means [n_way, D], in float32 for half-precision features (mixed precision); works for any
    number of shots per class."""
    features = upcast(features)
    sums = torch.zeros(n_way, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_way).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]


def prototype_logits(query: torch.Tensor, protos: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Logits in at least float32, also inside a mixed-precision region (meta.precision)."""
    with full_precision(query.device):
        query, protos = upcast(query), upcast(protos)
        if distance == "euclidean":
            return -torch.cdist(query, protos).pow(2)
        if distance == "cosine":
            return 10.0 * F.normalize(query, dim=-1) @ F.normalize(protos, dim=-1).T
    raise ValueError(f"unknown distance '{distance}'; use 'euclidean' or 'cosine'")


@LEARNERS.register("protonet")
class ProtoNet(Learner):
    takes_loss = True
    mixed_precision = True

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, weight_decay: float = 0.0,
                 lr_step: int = 0, lr_gamma: float = 0.5, distance: str = "euclidean",
                 loss: str = "cross_entropy", loss_options: dict | None = None) -> None:
        prototype_logits(torch.zeros(1, 1), torch.zeros(1, 1), distance)  # reject a bad name now
        self.model, self.distance = model, distance
        self.loss = EpisodicLoss(loss, loss_options)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        # lr_step counts meta-train steps; 0 keeps the rate constant
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, lr_step, lr_gamma) if lr_step else None)

    def _logits(self, ep: Episode) -> torch.Tensor:
        # one forward pass over support and query keeps BatchNorm statistics shared within the episode
        feats = self.model(torch.cat([ep.support_x, ep.query_x])).flatten(1)
        support, query = feats[: len(ep.support_y)], feats[len(ep.support_y):]
        return prototype_logits(query, prototypes(support, ep.support_y, ep.n_way), self.distance)

    def meta_train_step(self, episodes: Sequence[Episode]) -> dict[str, float]:
        self.model.train()
        return self.outer_step(episodes, self._logits, self.loss)

    @torch.no_grad()
    def predict(self, episode: Episode) -> torch.Tensor:
        with use_bn_mode(self.model, self.bn_mode):
            return self._logits(episode)
