"""MAML (Finn et al., 2017) on any backbone, with no rewriting of the model: first and second order,
ANIL (Raghu et al., 2020: adapt the head only), Meta-SGD (Li et al., 2017: learnable per-parameter inner
rates) and per-step BatchNorm statistics (Antoniou et al., 2019).

Fast weights are a dict of tensors passed to ``torch.func.functional_call``, so the backbone stays an
ordinary ``nn.Module``.  For scripting, in learn2learn's spirit::

    maml = MetaModel(backbone, n_way=5, inner_lr=0.4)
    learner = maml.clone()
    for _ in range(5):
        learner.adapt(F.cross_entropy(learner(support_x), support_y))
    F.cross_entropy(learner(query_x), query_y).backward()   # meta-gradient into maml's parameters
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..batchnorm import use_bn_mode
from ..episodes import Episode
from ..losses import EpisodicLoss
from .base import Learner
from .registry import LEARNERS
from .vmap_tasks import batched_query_logits, stackable

BN_STATS = ("shared", "per_step")
log = logging.getLogger(__name__)


def feature_dim(backbone: nn.Module, in_shape: tuple[int, ...] | None) -> int:
    if hasattr(backbone, "out_channels"):
        return int(backbone.out_channels)
    if in_shape is None:
        raise ValueError("the backbone has no out_channels attribute; pass in_shape to measure its feature size")
    with torch.no_grad(), use_bn_mode(backbone, "eval"):
        p = next(backbone.parameters())
        return int(backbone(torch.zeros(1, *in_shape, dtype=p.dtype, device=p.device)).flatten(1).shape[1])


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict / buffer names cannot hold dots


class MetaModel(nn.Module):
    """A backbone plus an ``n_way`` linear head: the meta-learned initialisation, and with ``meta_sgd``
    the inner learning rates, all in ``state_dict``.  ``bn_stats='per_step'`` keeps separate BatchNorm
    running statistics for every inner step (and one more for the adapted model)."""

    def __init__(self, backbone: nn.Module, n_way: int, *, inner_lr: float = 0.4, steps: int = 5,
                 first_order: bool = False, anil: bool = False, meta_sgd: bool = False, bn_stats: str = "shared",
                 in_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got '{bn_stats}'")
        self.backbone, self.head = backbone, nn.Linear(feature_dim(backbone, in_shape), n_way)
        nn.init.zeros_(self.head.weight)  # a zero head starts every task from uniform predictions
        nn.init.zeros_(self.head.bias)
        self.inner_lr, self.steps, self.first_order, self.anil = inner_lr, steps, first_order, anil
        self.bn_stats = bn_stats
        self.lrs = nn.ParameterDict({_key(n): nn.Parameter(torch.full_like(p, inner_lr))
                                     for n, p in self.adaptable().items()}) if meta_sgd else None
        if bn_stats == "per_step":  # copies of every BN buffer, one per inner step + the adapted model
            bn_buffers = {n: b for n, b in backbone.named_buffers() if not n.endswith("num_batches_tracked")}
            for s in range(steps + 1):
                for n, b in bn_buffers.items():
                    self.register_buffer(f"step{s}__{_key(n)}", b.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))

    def adaptable(self) -> dict[str, nn.Parameter]:
        """The parameters the inner loop changes: the head for ANIL, else backbone and head."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("lrs.")
                and (not self.anil or n.startswith("head."))}

    def meta_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def step_buffers(self, step: int) -> dict[str, torch.Tensor]:
        if self.bn_stats != "per_step":
            return {}
        prefix = f"step{min(step, self.steps)}__"
        out = {}
        for name, buf in self.named_buffers():
            if name.startswith(prefix):
                out["backbone." + name[len(prefix):].replace("__", ".")] = buf
        return out

    def clone(self, first_order: bool | None = None) -> "FastModel":
        return FastModel(self, self.first_order if first_order is None else first_order)


class FastModel:
    """Fast weights of one task: starts at the meta-parameters (graph-connected), changes with ``adapt``."""

    def __init__(self, meta: MetaModel, first_order: bool) -> None:
        self.meta, self.first_order, self.step = meta, first_order, 0
        self.params: dict[str, torch.Tensor] = dict(meta.adaptable())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.meta, {**self.params, **self.meta.step_buffers(self.step)}, (x,))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features with the current fast weights (the head is left out)."""
        params = {n[len("backbone."):]: p for n, p in self.params.items() if n.startswith("backbone.")}
        buffers = {n[len("backbone."):]: b for n, b in self.meta.step_buffers(self.step).items()}
        return functional_call(self.meta.backbone, {**params, **buffers}, (x,)).flatten(1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.params["head.weight"], self.params["head.bias"])

    def adapt(self, loss: torch.Tensor) -> None:
        """One inner gradient step on ``loss``; second order keeps the graph for the meta-gradient."""
        names = list(self.params)
        create_graph = not self.first_order and torch.is_grad_enabled()
        grads = torch.autograd.grad(loss, [self.params[n] for n in names], create_graph=create_graph,
                                    allow_unused=True)
        lrs = self.meta.lrs
        for n, g in zip(names, grads):
            if g is not None:
                lr = lrs[_key(n)] if lrs is not None else self.meta.inner_lr
                self.params[n] = self.params[n] - lr * g
        self.step += 1


@LEARNERS.register("maml")
class MAML(Learner):
    """The episodic learner around ``MetaModel``: inner loop on the support set, outer Adam step on the
    query loss summed over the meta-batch.  ``order``: 'second' or 'first'; ``anil``: adapt the head only
    (support features are computed once); ``test_steps``: inner steps at test time (default: ``steps``);
    ``vmap``: the meta-batch as one ``torch.func.vmap`` over tasks of equal shapes (``meta.learners.vmap_tasks``;
    the model must be vmap-able: no data-dependent control flow, no in-place writes to shared tensors)."""

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
                fast.adapt(loss(fast.head(support), ep.support_y))
            return fast.head(query)
        for _ in range(steps):
            fast.adapt(loss(fast(ep.support_x), ep.support_y))
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

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "meta": self.meta.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.meta.load_state_dict(state["meta"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])

    def trained_state(self) -> dict:
        """The head, inner rates and per-step statistics (the backbone's weights are saved on their own)."""
        return {"meta": {k: v for k, v in self.meta.state_dict().items() if not k.startswith("backbone.")}}

    def load_trained_state(self, state: dict) -> None:
        missing, unexpected = self.meta.load_state_dict(state["meta"], strict=False)
        if unexpected or any(not k.startswith("backbone.") for k in missing):
            raise ValueError(f"MAML state does not fit (missing {[k for k in missing if 'backbone.' not in k][:3]}, "
                             f"unexpected {unexpected[:3]})")
