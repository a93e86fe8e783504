"""Losses that need nothing from the data: cross-entropy (with label smoothing) and the focal loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LOSSES, Loss


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


def focal_terms(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample -(1 - p_y)^gamma log p_y (cross-entropy when gamma is 0)."""
    logp = F.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    return -(1 - logp.exp()).clamp_min(0) ** gamma * logp if gamma else -logp


@LOSSES.register("focal")
class Focal(Loss):
    """Softmax focal loss (Lin et al., 2017): -(1 - p_y)^gamma log p_y; gamma 0 is cross-entropy."""

    def __init__(self, gamma: float = 2.0) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        return focal_terms(logits, labels, self.gamma).mean()
