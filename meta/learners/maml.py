"""MAML (Finn et al., 2017) on any backbone, with no rewriting of the model: first and second order,
ANIL (Raghu et al., 2020: adapt the head only), Meta-SGD (Li et al., 2017: learnable per-parameter inner
rates) and per-step BatchNorm statistics (Antoniou et al., 2019).  The fast weights it adapts are
``meta.learners.fast_weights``'s ``MetaModel`` and ``FastModel``."""

from __future__ import annotations

import logging
from functools import partial
from typing import Sequence

import torch
from torch import nn

from ..batchnorm import use_bn_mode
from ..episodes import Episode
from ..losses import EpisodicLoss
from ..optim_state import load_optimizer_state
from ..precision import upcast
from .base import Learner
from .fast_weights import MetaModel
from .registry import LEARNERS
from .vmap_tasks import batched_query_logits, stackable

log = logging.getLogger(__name__)


@LEARNERS.register("maml")
class MAML(Learner):
    """The episodic learner around ``MetaModel``: inner loop on the support set, outer Adam step on the
    query loss summed over the meta-batch.  ``order``: 'second' or 'first'; ``anil``: adapt the head only
    (support features are computed once); ``test_steps``: inner steps at test time (default: ``steps``);
    ``vmap``: the meta-batch as one ``torch.func.vmap`` over tasks of equal shapes (``meta.learners.vmap_tasks``;
    the model must be vmap-able: no data-dependent control flow, no in-place writes to shared tensors)."""

    needs = ("n_way", "in_shape")  # an n_way head on features of in_shape (when the backbone has no out_channels)
    fixed_ways = True
    inner_loop = True
    takes_loss = True
    mixed_precision = True

    def __init__(self, model: nn.Module, *, n_way: int, inner_lr: float = 0.4, steps: int = 5,
                 test_steps: int | None = None, order: str = "second", anil: bool = False, meta_sgd: bool = False,
                 bn_stats: str = "shared", lr: float = 1e-3, lr_step: int = 0, lr_gamma: float = 0.5,
                 weight_decay: float = 0.0, loss: str = "cross_entropy", loss_options: dict | None = None,
                 vmap: bool = False,
                 in_shape: tuple[int, ...] | None = None) -> None:
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got '{order}'")
        if steps < 0 or (test_steps is not None and test_steps < 0):
            raise ValueError("steps and test_steps must be >= 0")
        if vmap and order == "second" and not anil and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                           for m in model.modules()):
            # torch's vmap rule for BatchNorm's double backward is wrong (pytorch/functorch#534): measured
            # meta-gradients off by up to 50%, so this combination is refused rather than trained wrongly
            raise ValueError("vmap with second-order MAML through BatchNorm gives wrong meta-gradients in torch "
                             "(pytorch/functorch#534); use order=first, anil=true or vmap=false")
        if order == "first" and steps == 1 and not anil:
            # from the zero head one inner step moves only the head, and first order passes no gradient through
            # that move to the backbone: Conv-4 on Omniglot stayed at ~43% 5-way training accuracy for 300
            # outer steps, against 79% after 100 with 5 inner steps (docs/benchmarks.md, issue #6)
            log.warning("first-order MAML with one inner step barely learns (measured); use train.options.steps >= 2")
        self.meta = MetaModel(model, n_way, inner_lr=inner_lr, steps=max(steps, test_steps or 0),
                              first_order=order == "first", anil=anil, meta_sgd=meta_sgd, bn_stats=bn_stats,
                              in_shape=in_shape)
        self.model, self.n_way, self.steps = model, n_way, steps
        self.test_steps = steps if test_steps is None else test_steps
        self.vmap = vmap
        self.loss = EpisodicLoss(loss, loss_options)
        self.optimizer = torch.optim.Adam(self.trainable_parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, lr_step, lr_gamma) if lr_step else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the outer loop updates: backbone, head and (Meta-SGD) inner rates."""
        return self.meta.meta_parameters()

    def to(self, device: torch.device | str) -> "MAML":
        self.meta.to(device)
        return self

    def _check(self, ep: Episode) -> None:
        if ep.n_way != self.n_way:
            raise ValueError(f"this MAML head has {self.n_way} outputs; a {ep.n_way}-way episode needs a model "
                             f"meta-trained with train.episode.n_way={ep.n_way}")

    def adapt_and_predict(self, ep: Episode, steps: int, first_order: bool) -> torch.Tensor:
        """Query logits after ``steps`` inner steps on the support set."""
        self._check(ep)
        fast = self.meta.clone(first_order)
        loss = self.loss.for_episode(ep)
        if self.meta.anil:  # the backbone does not change in the inner loop: one forward pass
            feats = fast.features(torch.cat([ep.support_x, ep.query_x]))
            support, query = feats[: len(ep.support_y)], feats[len(ep.support_y):]
            for _ in range(steps):
                fast.adapt(loss(upcast(fast.head(support)), ep.support_y))
            return fast.head(query)
        for _ in range(steps):
            fast.adapt(loss(upcast(fast(ep.support_x)), ep.support_y))
        return fast(ep.query_x)

    def meta_train_step(self, episodes: Sequence[Episode]) -> dict[str, float]:
        self.meta.train()
        batched = None
        # one support loss serves every task of the map: a count-based loss needs the same support counts
        same_counts = not self.loss.with_counts or all(torch.equal(ep.support_y, episodes[0].support_y)
                                                       for ep in episodes)
        if self.vmap and stackable(episodes) and same_counts:
            for ep in episodes:
                self._check(ep)
            batched = partial(batched_query_logits, self.meta, steps=self.steps, first_order=self.meta.first_order,
                              loss_fn=self.loss.for_episode(episodes[0]))
        return self.outer_step(episodes, lambda ep: self.adapt_and_predict(ep, self.steps, self.meta.first_order),
                               self.loss, batched)

    def predict(self, episode: Episode) -> torch.Tensor:
        # the inner loop needs gradients even under evaluate()'s no_grad; first order: no graph is kept
        with torch.enable_grad(), use_bn_mode(self.meta, self.bn_mode):
            return self.adapt_and_predict(episode, self.test_steps, first_order=True).detach()

    def sync_buffers(self) -> None:
        self.ranks.average_buffers(self.meta)  # the backbone's statistics and any per-step ones

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "meta": self.meta.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.meta.load_state_dict(state["meta"])
        load_optimizer_state(self.optimizer, self.scheduler, state["optimizer"], state.get("scheduler"))

    def trained_state(self) -> dict:
        """The head, inner rates and per-step statistics (the backbone's weights are saved on their own)."""
        return {"meta": {k: v for k, v in self.meta.state_dict().items() if not k.startswith("backbone.")}}

    def load_trained_state(self, state: dict) -> None:
        missing, unexpected = self.meta.load_state_dict(state["meta"], strict=False)
        if unexpected or any(not k.startswith("backbone.") for k in missing):
            raise ValueError(f"MAML state does not fit (missing {[k for k in missing if 'backbone.' not in k][:3]}, "
                             f"unexpected {unexpected[:3]})")
