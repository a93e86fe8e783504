"""The fine-tune baseline (Chen et al., ICLR 2019, "A Closer Look at Few-shot Classification"): the
backbone, pretrained as a many-way classifier (``pretrain.steps``) or loaded (``model.weights``), stays
frozen; every episode trains a new linear head on the support features and classifies the queries with it.
There is no meta-training, so a run with this learner sets ``train.steps: 0``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batchnorm import use_bn_mode
from ..episodes import Episode
from ..losses import EpisodicLoss
from .base import Learner
from .registry import LEARNERS


@LEARNERS.register("finetune")
class FineTune(Learner):
    """``steps`` full-batch Adam steps at ``lr`` on a zero-initialised head (so every episode is
    deterministic); ``normalize`` L2-normalises the features and scales the logits by ``scale`` (a cosine
    classifier, as Baseline++ uses); ``weight_decay`` regularises the head."""

    meta_trains = False
    takes_loss = True

    def __init__(self, model: nn.Module, *, steps: int = 100, lr: float = 0.01, weight_decay: float = 1e-3,
                 normalize: bool = False, scale: float = 10.0, loss: str = "cross_entropy",
                 loss_options: dict | None = None) -> None:
        if steps < 1 or lr <= 0 or weight_decay < 0 or scale <= 0:
            raise ValueError("finetune needs steps >= 1, lr > 0, weight_decay >= 0 and scale > 0")
        self.model, self.steps, self.lr, self.weight_decay = model, steps, lr, weight_decay
        self.normalize, self.scale = normalize, scale
        self.loss = EpisodicLoss(loss, loss_options)
        for p in model.parameters():  # frozen: nothing of the backbone is ever updated
            p.requires_grad_(False)
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)  # nothing to optimise

    def meta_train_step(self, episodes: Sequence[Episode]) -> dict[str, float]:
        raise RuntimeError("the fine-tune baseline does not meta-train: set train.steps: 0 and pretrain the "
                           "backbone (pretrain.steps) or load it (model.weights)")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model(x).flatten(1)
        return F.normalize(feats, dim=1) if self.normalize else feats

    def fit_head(self, support: torch.Tensor, labels: torch.Tensor, n_way: int) -> nn.Linear:
        head = nn.Linear(support.shape[1], n_way).to(support.device, support.dtype)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        opt = torch.optim.Adam(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scale = self.scale if self.normalize else 1.0
        loss = self.loss.for_support(labels, n_way)
        with torch.enable_grad():
            for step in range(self.steps):
                loss.step(step, self.steps)  # a loss schedule (LDAM's DRW) runs over the head's steps
                opt.zero_grad(set_to_none=True)
                loss(scale * head(support), labels).backward()
                opt.step()
        return head

    @torch.no_grad()
    def predict(self, episode: Episode) -> torch.Tensor:
        with use_bn_mode(self.model, self.bn_mode):
            feats = self.features(torch.cat([episode.support_x, episode.query_x]))
        support, query = feats[: len(episode.support_y)], feats[len(episode.support_y):]
        head = self.fit_head(support, episode.support_y, episode.n_way)
        return (self.scale if self.normalize else 1.0) * head(query)
