"""MAML's fast weights on any backbone, with no rewriting of the model: ``MetaModel`` (backbone + linear head,
the meta-learned initialisation, Meta-SGD's inner rates, per-step BatchNorm statistics) and ``FastModel``
(one task's adapted weights).  Fast weights are a dict of tensors passed to ``torch.func.functional_call``,
so the backbone stays an ordinary ``nn.Module``.  For scripting, in learn2learn's spirit::

    maml = MetaModel(backbone, n_way=5, inner_lr=0.4)
    learner = maml.clone()
    for _ in range(5):
        learner.adapt(F.cross_entropy(learner(support_x), support_y))
    F.cross_entropy(learner(query_x), query_y).backward()   # meta-gradient into maml's parameters

The names of inner rates and per-step statistics, and which buffers an inner step uses, are decided here
for both the task-by-task loop (``FastModel``) and the vmap over tasks (``meta.learners.vmap_tasks``).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..batchnorm import use_bn_mode

BN_STATS = ("shared", "per_step")


def param_key(name: str) -> str:
    """``name`` as a ParameterDict key or buffer name, which cannot hold dots."""
    return name.replace(".", "__")


def step_buffer_name(step: int, name: str) -> str:
    """The buffer holding inner step ``step``'s copy of the backbone's BatchNorm buffer ``name``."""
    return f"step{step}__{param_key(name)}"


def step_statistics(buffers: Mapping[str, torch.Tensor], step: int, steps: int) -> dict[str, torch.Tensor]:
    """The per-step BatchNorm statistics of inner step ``step`` (``steps``: the adapted model's, for any later
    step) among a ``MetaModel``'s ``buffers``, under the names of the backbone buffers they stand for."""
    prefix = f"step{min(step, steps)}__"
    return {"backbone." + name[len(prefix):].replace("__", "."): buf for name, buf in buffers.items()
            if name.startswith(prefix)}


def feature_dim(backbone: nn.Module, in_shape: tuple[int, ...] | None) -> int:
    if hasattr(backbone, "out_channels"):
        return int(backbone.out_channels)
    if in_shape is None:
        raise ValueError("the backbone has no out_channels attribute; pass in_shape to measure its feature size")
    with torch.no_grad(), use_bn_mode(backbone, "eval"):
        p = next(backbone.parameters())
        return int(backbone(torch.zeros(1, *in_shape, dtype=p.dtype, device=p.device)).flatten(1).shape[1])


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
        self.lrs = nn.ParameterDict({param_key(n): nn.Parameter(torch.full_like(p, inner_lr))
                                     for n, p in self.adaptable().items()}) if meta_sgd else None
        if bn_stats == "per_step":  # copies of every BN buffer, one per inner step + the adapted model
            bn_buffers = {n: b for n, b in backbone.named_buffers() if not n.endswith("num_batches_tracked")}
            for s in range(steps + 1):
                for n, b in bn_buffers.items():
                    self.register_buffer(step_buffer_name(s, n), b.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))

    def adaptable(self) -> dict[str, nn.Parameter]:
        """The parameters the inner loop changes: the head for ANIL, else backbone and head."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("lrs.")
                and (not self.anil or n.startswith("head."))}

    def meta_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def inner_lr_of(self, name: str) -> torch.Tensor | float:
        """The inner learning rate of the adaptable parameter ``name``: Meta-SGD's learned one, else ``inner_lr``."""
        return self.lrs[param_key(name)] if self.lrs is not None else self.inner_lr

    def step_buffers(self, step: int) -> dict[str, torch.Tensor]:
        """What inner step ``step`` overrides among this model's own buffers: its per-step statistics (none
        with shared statistics, which the model's own BatchNorm buffers hold)."""
        if self.bn_stats != "per_step":
            return {}
        return step_statistics(dict(self.named_buffers()), step, self.steps)

    def task_buffers(self, buffers: Mapping[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Every backbone buffer inner step ``step`` reads, taken from ``buffers`` (one task's copies of this
        model's named buffers, as the vmap over tasks keeps them): the shared statistics, or the batch
        counters and that step's per-step statistics."""
        if self.bn_stats != "per_step":
            return {n: b for n, b in buffers.items() if n.startswith("backbone.")}
        counters = {n: b for n, b in buffers.items()
                    if n.startswith("backbone.") and n.endswith("num_batches_tracked")}
        return {**counters, **step_statistics(buffers, step, self.steps)}

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
        for n, g in zip(names, grads):
            if g is not None:
                self.params[n] = self.params[n] - self.meta.inner_lr_of(n) * g
        self.step += 1
