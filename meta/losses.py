"""LOSSES: name -> factory returning ``loss(logits, labels) -> scalar``.  Learners take a loss by name,
so long-tail losses plug in as one function and one registry line.

Losses that depend on the class frequencies take ``class_counts`` (images per class, from the data: never
typed by hand; ``create_loss`` passes them to the factories that ask for them).  Every loss equals
cross-entropy at its neutral setting and is computed in log space, so logits of +-1e4 stay finite.
"""

from __future__ import annotations

import inspect
import logging
from typing import Callable

import torch
import torch.nn.functional as F

from .registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry = Registry("loss")
log = logging.getLogger(__name__)


def _counts(class_counts, name: str, allow_zero: bool = False) -> torch.Tensor:
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


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return loss


def focal_terms(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample -(1 - p_y)^gamma log p_y (cross-entropy when gamma is 0)."""
    logp = F.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    return -(1 - logp.exp()).clamp_min(0) ** gamma * logp if gamma else -logp


@LOSSES.register("focal")
def focal(gamma: float = 2.0) -> LossFn:
    """Softmax focal loss (Lin et al., 2017): -(1 - p_y)^gamma log p_y; gamma 0 is cross-entropy."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return focal_terms(logits, labels, gamma).mean()
    return loss


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al., 2019): (1 - beta) / (1 - beta^n), normalised to sum to the number
    of classes; beta 0 gives equal weights."""
    w = (1 - beta) / (1 - beta ** counts)
    return w / w.sum() * len(counts)


@LOSSES.register("class_balanced")
def class_balanced(class_counts=None, beta: float = 0.999, gamma: float = 0.0) -> LossFn:
    """Cross-entropy (or focal, ``gamma`` > 0) weighted per class by the inverse effective number of samples."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    weights = effective_number_weights(_counts(class_counts, "class_balanced"), beta).float()

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        w = weights.to(logits.device, logits.dtype)[labels]
        return (w * focal_terms(logits, labels, gamma)).sum() / len(labels)
    return loss


@LOSSES.register("balanced_softmax")
def balanced_softmax(class_counts=None, tau: float = 1.0) -> LossFn:
    """Logit adjustment (Menon et al., 2021): cross-entropy on logits + tau * log prior; tau 1 is the balanced
    softmax (Ren et al., 2020), tau 0 is cross-entropy.  Training only: predict with the plain logits."""
    counts = _counts(class_counts, "balanced_softmax")
    shift = (tau * (counts / counts.sum()).log()).float()

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + shift.to(logits.device, logits.dtype), labels)
    return loss


@LOSSES.register("ldam")
def ldam(class_counts=None, max_margin: float = 0.5, scale: float = 30.0, drw_start: float | None = None,
         drw_beta: float = 0.9999) -> LossFn:
    """LDAM (Cao et al., 2019): the target logit lowered by a margin proportional to n^(-1/4) (largest
    ``max_margin``), logits times ``scale``; with deferred re-weighting (DRW), class-balanced weights from
    ``drw_start`` (a fraction of training; the loss's ``step(t, total)`` is told the progress).
    max_margin 0, scale 1, no DRW: cross-entropy.  Margins and scale are meant for cosine logits in [-1, 1]
    (``cosine_logits``: pretraining gives it a cosine classifier); on raw linear logits scale 30 multiplied
    the learning rate and Conv-4 pretraining on long-tailed Omniglot diverged (0.0% base accuracy)."""
    counts = _counts(class_counts, "ldam")
    margins = counts ** -0.25
    margins = (margins * (max_margin / margins.max())).float()
    weights = effective_number_weights(counts, drw_beta).float()
    state = {"reweight": False}

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        m = torch.zeros_like(logits).scatter_(1, labels[:, None], margins.to(logits.device, logits.dtype)[labels, None])
        z = scale * (logits - m)
        w = weights.to(logits.device, logits.dtype) if state["reweight"] else None
        return F.cross_entropy(z, labels, weight=w)

    def step(t: int, total: int) -> None:
        state["reweight"] = drw_start is not None and t >= drw_start * total
    loss.step = step
    loss.cosine_logits = True
    return loss


@LOSSES.register("seql")
def seql(class_counts=None, lam: float = 1e-3, gamma: float = 0.9) -> LossFn:
    """Softmax equalization loss (Tan et al., 2021): for each sample, the negative logits of tail classes
    (frequency below ``lam``) leave the softmax denominator with probability ``gamma``, so the many head
    samples stop suppressing them.  lam 0 or gamma 0 is cross-entropy.  Draws from torch's RNG."""
    counts = _counts(class_counts, "seql", allow_zero=True)
    tail = (counts / counts.sum() < lam).float()

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        drop = (torch.rand(logits.shape, device=logits.device) < gamma).to(logits.dtype)
        w = 1 - drop * tail.to(logits.device, logits.dtype)[None, :]
        w = w.scatter(1, labels[:, None], 1.0)  # the target always stays
        log_denominator = torch.logsumexp(logits + torch.log(w.clamp_min(0)), dim=1)
        return (log_denominator - logits.gather(1, labels[:, None]).squeeze(1)).mean()
    return loss


@LOSSES.register("cdt")
def cdt(class_counts=None, gamma: float = 0.1) -> LossFn:
    """Class-dependent temperatures (Ye et al., 2020): logit j divided by (n_max / n_j)^gamma during
    training (head classes get a sharper softmax); gamma 0 is cross-entropy.  Training only."""
    counts = _counts(class_counts, "cdt")
    temps = ((counts.max() / counts) ** gamma).float()

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / temps.to(logits.device, logits.dtype), labels)
    return loss


@LOSSES.register("ib")
def influence_balanced(class_counts=None, alpha: float = 1000.0, epsilon: float = 1e-3, warmup: float = 0.5,
                       class_weighted: bool = True) -> LossFn:
    """Influence-balanced loss (Park et al., 2021): after plain cross-entropy for the first ``warmup`` share of
    training (the loss's ``step(t, total)`` is told the progress), each sample's cross-entropy is divided by
    its influence ||softmax - onehot||_1 * ||h||_1 (h: the features before the classifier, passed as
    ``features=``), times ``alpha``, with class weights n_k^-1 normalised to sum to the number of classes.
    Before the warm-up ends, or with warmup 1, it is cross-entropy."""
    counts = _counts(class_counts, "ib")
    weights = (1 / counts) / (1 / counts).sum() * len(counts) if class_weighted else torch.ones_like(counts)
    state = {"active": False}

    def loss(logits: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        if not state["active"]:
            return F.cross_entropy(logits, labels)
        if features is None:
            raise ValueError("the ib loss needs the features before the classifier (features=...)")
        onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        influence = (F.softmax(logits, 1) - onehot).abs().sum(1) * features.flatten(1).abs().sum(1)
        scale = (alpha / (influence + epsilon)).detach()  # a per-sample weight: no gradient through it
        w = weights.to(logits.device, logits.dtype)
        return (F.cross_entropy(logits, labels, weight=w, reduction="none") * scale).mean()

    def step(t: int, total: int) -> None:
        state["active"] = t >= warmup * total and warmup < 1
    loss.step, loss.needs_features = step, True
    return loss


def create_loss(name: str, class_counts=None, **options) -> LossFn:
    """The loss ``name`` with ``options``; ``class_counts`` goes to the losses that take it."""
    factory = LOSSES[name]
    if "class_counts" in inspect.signature(factory).parameters:
        options["class_counts"] = class_counts
    return factory(**options)


def needs_class_counts(name: str) -> bool:
    return "class_counts" in inspect.signature(LOSSES[name]).parameters


class EpisodicLoss:
    """A loss for episodes (meta-training query losses, inner loops, fine-tuned heads).  Losses built on class
    counts get the episode's support counts (its imbalance, under an imbalanced shot profile); schedules such
    as LDAM's deferred re-weighting follow ``step(t, total)`` (the meta-training progress).  IB needs the
    features before a linear classifier, which only pretraining has, so it is refused here."""

    def __init__(self, name: str = "cross_entropy", options: dict | None = None) -> None:
        if LOSSES[name] is influence_balanced:
            raise ValueError("the ib loss needs the features before a linear classifier: use it in pretraining "
                             "(pretrain.options.loss), not in episodes")
        self.name, self.options = name, dict(options or {})
        self.with_counts = needs_class_counts(name)
        self.progress = (0, 1)
        # built once now: bad options fail here, not in the first episode
        probe = create_loss(name, class_counts=[1, 1] if self.with_counts else None, **self.options)
        if getattr(probe, "cosine_logits", False) and "scale" not in self.options:
            log.warning("the %s loss's default scale is meant for cosine logits, which episodic learners do not "
                        "give (distances, linear heads); set its loss_options.scale (1: unscaled)", name)
        self._fixed = None if self.with_counts else probe

    def step(self, t: int, total: int) -> None:
        self.progress = (int(t), max(int(total), 1))

    def for_support(self, support_y: torch.Tensor, n_way: int) -> LossFn:
        fn = self._fixed or create_loss(self.name, class_counts=torch.bincount(support_y.cpu(), minlength=n_way),
                                        **self.options)
        if hasattr(fn, "step"):
            fn.step(*self.progress)
        return fn

    def for_episode(self, episode) -> LossFn:
        return self.for_support(episode.support_y, episode.n_way)
