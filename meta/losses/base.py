"""The loss interface: a ``Loss`` is called as ``loss(logits, labels, features=None)`` and declares, as class
traits, what its callers must give it; ``step(t, total)`` tells it how far training is.  ``LOSSES`` maps
names to loss classes, whose constructor arguments are the loss's options."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ..registry import Registry


class Loss(ABC):
    """A training loss of logits and labels.  ``needs_counts``: the constructor takes ``class_counts`` (images
    per class of the training data; ``create_loss`` passes them); ``needs_features``: calls must pass
    ``features=`` (the features before a linear classifier); ``cosine_logits``: its default settings are meant
    for cosine logits in [-1, 1] (pretraining gives it a cosine classifier)."""

    needs_counts: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    cosine_logits: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        """The scalar loss; ``features`` is ignored by losses that do not need them."""

    def step(self, t: int, total: int) -> None:
        """Training has reached step ``t`` of ``total``: schedules inside a loss follow it (none by default)."""


LOSSES: Registry[type[Loss]] = Registry("loss")


def checked_counts(class_counts, name: str, allow_zero: bool = False) -> torch.Tensor:
    """``class_counts`` as float64, refused when missing, not one count per class, or (unless ``allow_zero``)
    holding an empty class the loss would divide by."""
    if class_counts is None:
        raise ValueError(f"the {name} loss needs the class counts of the training data")
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError(f"the {name} loss needs a count per class (at least 2 classes)")
    if not allow_zero and bool((counts <= 0).any()):
        empty = (counts <= 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"the {name} loss divides by class counts, and classes {empty} have no images; drop empty "
                         f"classes from the split or choose a loss without class counts")
    return counts


def create_loss(name: str, class_counts=None, **options) -> Loss:
    """The loss ``name`` with ``options``; ``class_counts`` goes to the losses that need them."""
    cls = LOSSES[name]
    if cls.needs_counts:
        options["class_counts"] = class_counts
    return cls(**options)


def needs_class_counts(name: str) -> bool:
    return LOSSES[name].needs_counts
