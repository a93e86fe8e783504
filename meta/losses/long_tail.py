"""Losses for long-tailed data, built on the class frequencies of the training data (``class_counts``).
Each equals cross-entropy at its neutral setting and is computed in log space, so logits of +-1e4 stay
finite."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LOSSES, Loss, checked_counts
from .plain import focal_terms


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al., 2019): (1 - beta) / (1 - beta^n), normalised to sum to the number
    of classes; beta 0 gives equal weights."""
    w = (1 - beta) / (1 - beta ** counts)
    return w / w.sum() * len(counts)


class CountLoss(Loss):
    """A loss built on the class counts of the training data."""

    needs_counts = True


@LOSSES.register("class_balanced")
class ClassBalanced(CountLoss):
    """Cross-entropy (or focal, ``gamma`` > 0) weighted per class by the inverse effective number of samples."""

    def __init__(self, class_counts=None, beta: float = 0.999, gamma: float = 0.0) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.weights = effective_number_weights(checked_counts(class_counts, "class_balanced"), beta).float()
        self.gamma = gamma

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weights.to(logits.device, logits.dtype)[labels]
        return (w * focal_terms(logits, labels, self.gamma)).sum() / len(labels)


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(CountLoss):
    """Logit adjustment (Menon et al., 2021): cross-entropy on logits + tau * log prior; tau 1 is the balanced
    softmax (Ren et al., 2020), tau 0 is cross-entropy.  Training only: predict with the plain logits."""

    def __init__(self, class_counts=None, tau: float = 1.0) -> None:
        counts = checked_counts(class_counts, "balanced_softmax")
        self.shift = (tau * (counts / counts.sum()).log()).float()

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits + self.shift.to(logits.device, logits.dtype), labels)


@LOSSES.register("ldam")
class LDAM(CountLoss):
    """LDAM (Cao et al., 2019): the target logit lowered by a margin proportional to n^(-1/4) (largest
    ``max_margin``), logits times ``scale``; with deferred re-weighting (DRW), class-balanced weights from
    ``drw_start`` (a fraction of training, followed through ``step(t, total)``).
    max_margin 0, scale 1, no DRW: cross-entropy.  Margins and scale are meant for cosine logits in [-1, 1]
    (``cosine_logits``: pretraining gives it a cosine classifier); on raw linear logits scale 30 multiplied
    the learning rate and Conv-4 pretraining on long-tailed Omniglot diverged (0.0% base accuracy)."""

    cosine_logits = True

    def __init__(self, class_counts=None, max_margin: float = 0.5, scale: float = 30.0,
                 drw_start: float | None = None, drw_beta: float = 0.9999) -> None:
        counts = checked_counts(class_counts, "ldam")
        margins = counts ** -0.25
        self.margins = (margins * (max_margin / margins.max())).float()
        self.weights = effective_number_weights(counts, drw_beta).float()
        self.scale, self.drw_start, self.reweight = scale, drw_start, False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        m = torch.zeros_like(logits).scatter_(1, labels[:, None],
                                              self.margins.to(logits.device, logits.dtype)[labels, None])
        z = self.scale * (logits - m)
        w = self.weights.to(logits.device, logits.dtype) if self.reweight else None
        return F.cross_entropy(z, labels, weight=w)

    def step(self, t: int, total: int) -> None:
        self.reweight = self.drw_start is not None and t >= self.drw_start * total


@LOSSES.register("seql")
class SEQL(CountLoss):
    """Softmax equalization loss (Tan et al., 2021): for each sample, the negative logits of tail classes
    (frequency below ``lam``) leave the softmax denominator with probability ``gamma``, so the many head
    samples stop suppressing them.  lam 0 or gamma 0 is cross-entropy.  Draws from torch's RNG."""

    def __init__(self, class_counts=None, lam: float = 1e-3, gamma: float = 0.9) -> None:
        counts = checked_counts(class_counts, "seql", allow_zero=True)
        self.tail = (counts / counts.sum() < lam).float()
        self.gamma = gamma

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        drop = (torch.rand(logits.shape, device=logits.device) < self.gamma).to(logits.dtype)
        w = 1 - drop * self.tail.to(logits.device, logits.dtype)[None, :]
        w = w.scatter(1, labels[:, None], 1.0)  # the target always stays
        log_denominator = torch.logsumexp(logits + torch.log(w.clamp_min(0)), dim=1)
        return (log_denominator - logits.gather(1, labels[:, None]).squeeze(1)).mean()


@LOSSES.register("cdt")
class CDT(CountLoss):
    """Class-dependent temperatures (Ye et al., 2020): logit j divided by (n_max / n_j)^gamma during
    training (head classes get a sharper softmax); gamma 0 is cross-entropy.  Training only."""

    def __init__(self, class_counts=None, gamma: float = 0.1) -> None:
        counts = checked_counts(class_counts, "cdt")
        self.temps = ((counts.max() / counts) ** gamma).float()

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits / self.temps.to(logits.device, logits.dtype), labels)


@LOSSES.register("ib")
class InfluenceBalanced(CountLoss):
    """Influence-balanced loss (Park et al., 2021): after plain cross-entropy for the first ``warmup`` share of
    training (followed through ``step(t, total)``), each sample's cross-entropy is divided by its influence
    ||softmax - onehot||_1 * ||h||_1 (h: the features before the classifier, passed as ``features=``), times
    ``alpha``, with class weights n_k^-1 normalised to sum to the number of classes.  Before the warm-up
    ends, or with warmup 1, it is cross-entropy."""

    needs_features = True

    def __init__(self, class_counts=None, alpha: float = 1000.0, epsilon: float = 1e-3, warmup: float = 0.5,
                 class_weighted: bool = True) -> None:
        counts = checked_counts(class_counts, "ib")
        self.weights = (1 / counts) / (1 / counts).sum() * len(counts) if class_weighted else torch.ones_like(counts)
        self.alpha, self.epsilon, self.warmup, self.active = alpha, epsilon, warmup, False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        if not self.active:
            return F.cross_entropy(logits, labels)
        if features is None:
            raise ValueError("the ib loss needs the features before the classifier (features=...)")
        onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        influence = (F.softmax(logits, 1) - onehot).abs().sum(1) * features.flatten(1).abs().sum(1)
        scale = (self.alpha / (influence + self.epsilon)).detach()  # a per-sample weight: no gradient through it
        w = self.weights.to(logits.device, logits.dtype)
        return (F.cross_entropy(logits, labels, weight=w, reduction="none") * scale).mean()

    def step(self, t: int, total: int) -> None:
        self.active = t >= self.warmup * total and self.warmup < 1
