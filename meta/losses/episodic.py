"""Losses for episodes: a loss built per episode from its support set."""

from __future__ import annotations

import logging

import torch

from .base import LOSSES, Loss, create_loss, needs_class_counts

log = logging.getLogger(__name__)


class EpisodicLoss:
    """A loss for episodes (meta-training query losses, inner loops, fine-tuned heads).  Losses built on class
    counts get the episode's support counts (its imbalance, under an imbalanced shot profile); schedules such
    as LDAM's deferred re-weighting follow ``step(t, total)`` (the meta-training progress).  A loss that needs
    the features before a linear classifier (IB), which only pretraining has, is refused here."""

    def __init__(self, name: str = "cross_entropy", options: dict | None = None) -> None:
        if LOSSES[name].needs_features:
            raise ValueError(f"the {name} loss needs the features before a linear classifier: use it in pretraining "
                             f"(pretrain.options.loss), not in episodes")
        self.name, self.options = name, dict(options or {})
        self.with_counts = needs_class_counts(name)
        self.progress = (0, 1)
        # built once now: bad options fail here, not in the first episode
        probe = create_loss(name, class_counts=[1, 1] if self.with_counts else None, **self.options)
        if probe.cosine_logits and "scale" not in self.options:
            log.warning("the %s loss's default scale is meant for cosine logits, which episodic learners do not "
                        "give (distances, linear heads); set its loss_options.scale (1: unscaled)", name)
        self._fixed = None if self.with_counts else probe

    def step(self, t: int, total: int) -> None:
        self.progress = (int(t), max(int(total), 1))

    def for_support(self, support_y: torch.Tensor, n_way: int) -> Loss:
        fn = self._fixed if self._fixed is not None else create_loss(
            self.name, class_counts=torch.bincount(support_y.cpu(), minlength=n_way), **self.options)
        fn.step(*self.progress)
        return fn

    def for_episode(self, episode) -> Loss:
        return self.for_support(episode.support_y, episode.n_way)
