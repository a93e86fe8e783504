"""LOSSES: name -> factory returning ``loss(logits, labels) -> scalar``.  Learners take a loss by name,
so long-tail losses plug in as one function and one registry line."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return loss


def create_loss(name: str, **options) -> LossFn:
    return LOSSES[name](**options)
