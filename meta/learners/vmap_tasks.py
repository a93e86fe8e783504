"""MAML's meta-batch as one ``torch.func.vmap`` over tasks: the inner loop is ``torch.func.grad`` of the support
loss (its result stays differentiable, so second order works), the query logits of all tasks come out
stacked and one ``backward`` gives the meta-gradient.

BatchNorm running statistics are per-task copies inside the map (vmap cannot write one shared buffer
from many tasks); afterwards the module's buffers take the mean over tasks.  The loop instead updates
them task after task, so the two paths train the same weights but keep slightly different running
statistics, which only matter when evaluating with ``bn_mode: eval``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.func import functional_call, grad, vmap

from ..episodes import Episode
from ..losses import Loss
from .fast_weights import MetaModel


def stackable(episodes: Sequence[Episode]) -> bool:
    """Tasks can share one map when all their tensors have the same shapes (same ways, shots, queries)."""
    first = episodes[0]
    return len(episodes) > 1 and all(
        a.shape == b.shape for ep in episodes[1:] for a, b in
        zip((ep.support_x, ep.support_y, ep.query_x, ep.query_y), (first.support_x, first.support_y,
                                                                    first.query_x, first.query_y)))


def batched_query_logits(meta: MetaModel, episodes: Sequence[Episode], steps: int, first_order: bool,
                         loss_fn: Loss) -> torch.Tensor:
    """Query logits [tasks, queries, n_way] after ``steps`` inner steps on every task's support set."""
    start = dict(meta.adaptable())
    lrs = {n: meta.inner_lr_of(n) for n in start}
    shared = dict(meta.named_buffers())
    copies = {n: b.unsqueeze(0).expand(len(episodes), *b.shape).clone() for n, b in shared.items()}
    sx, sy, qx = (torch.stack([getattr(ep, a) for ep in episodes]) for a in ("support_x", "support_y", "query_x"))

    def task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, bufs: dict[str, torch.Tensor]) -> torch.Tensor:
        params = dict(start)
        if meta.anil:  # the backbone does not change: features once, the head adapts
            backbone = {n[len("backbone."):]: b for n, b in meta.task_buffers(bufs, 0).items()}
            feats = functional_call(meta.backbone, backbone, (torch.cat([sx, qx]),)).flatten(1)
            support, query = feats[: len(sy)], feats[len(sy):]

            def support_loss(p: dict[str, torch.Tensor], _: dict) -> torch.Tensor:
                return loss_fn(torch.nn.functional.linear(support, p["head.weight"], p["head.bias"]), sy)
        else:
            # the buffers are an input, not a captured tensor: grad lets BatchNorm update inputs in place
            def support_loss(p: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> torch.Tensor:
                return loss_fn(functional_call(meta, {**p, **buffers}, (sx,)), sy)
        for step in range(steps):
            g = grad(support_loss)(params, {} if meta.anil else meta.task_buffers(bufs, step))
            params = {n: p - lrs[n] * (g[n].detach() if first_order else g[n]) for n, p in params.items()}
        if meta.anil:
            return torch.nn.functional.linear(query, params["head.weight"], params["head.bias"])
        return functional_call(meta, {**params, **meta.task_buffers(bufs, steps)}, (qx,))

    logits = vmap(task, randomness="different")(sx, sy, qx, copies)
    with torch.no_grad():  # running statistics: the mean over tasks (counters advance as in one task)
        for n, b in shared.items():
            b.copy_(copies[n].mean(0) if b.is_floating_point() else copies[n][0])
    return logits
