"""Evolutionary architecture search over a trained supernet (SPOS, Guo et al. 2020).

Each candidate is scored by few-shot accuracy (ProtoNet head) on fixed meta-validation episodes, using
the weights it inherits from the supernet after its BatchNorm statistics are recalibrated on meta-train
batches (the statistics accumulated while training random paths belong to no single path).
Constraints filter candidates; an infeasible constraint ends with ``SearchError`` after a bounded number
of draws, never a hang.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from meta.episodes import Episode, EpisodeSampler
from search_spaces import recombine

from ..errors import UserError
from .constraints import LatencyBound
from .objective import episode_logits

log = logging.getLogger(__name__)


class SearchError(UserError):
    """The search cannot go on as configured (e.g. no architecture meets the constraints)."""


def check_feasible(supernet: nn.Module, max_params: int | None, input_size, tries: int, seed: int,
                   bounds: Sequence[LatencyBound] = ()) -> None:
    """Before any training: at least one of ``tries`` random architectures meets ``max_params`` and every
    latency bound."""
    if max_params is None and not bounds:
        return
    gen = torch.Generator().manual_seed(seed)
    smallest, fastest = None, [None] * len(bounds)
    for _ in range(tries):
        g = supernet.sample_path(gen)
        params = g.params(input_size) if max_params is not None else 0
        ms = [b.predict(g) for b in bounds]
        if (max_params is None or params <= max_params) and all(m <= b.limit_ms for m, b in zip(ms, bounds)):
            return
        smallest = params if smallest is None else min(smallest, params)
        fastest = [m if f is None else min(f, m) for f, m in zip(fastest, ms)]
    found = []
    if max_params is not None:
        found.append(f"search.max_params={max_params} (smallest drawn: {smallest:,} parameters)")
    for b, f in zip(bounds, fastest):
        found.append(f"{b.name} (fastest drawn: {f:.3f} ms predicted)")
    raise SearchError(f"none of {tries} random architectures of this space meets {' and '.join(found)}; relax the "
                      f"constraint or shrink the space")


@dataclass
class Candidate:
    genotype: object
    score: float
    params: int
    latency_ms: float | None = None  # predicted, when the search has a latency table
    proxy: float | None = None  # accuracy after a short stand-alone training (nas.search.rerank), when re-ranked
    measured: list[float] | None = None  # timed / the reference's time, per latency table (nas.search.confirm)


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Replace running BN statistics by the cumulative average over ``batches`` (train-mode forwards)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    for x in batches:
        net(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.eval()


def scoring_data(train: EpisodeSampler, val: EpisodeSampler, eval_episodes: int, bn_batches: int,
                 device: torch.device) -> tuple[list[torch.Tensor], list[Episode]]:
    """What every candidate is scored with: meta-train batches recalibrating BatchNorm, fixed val episodes."""
    batches = [torch.cat([e.support_x, e.query_x]) for e in (train.episode(10**6 + i).to(device)
                                                            for i in range(bn_batches))]
    return batches, [val.episode(i).to(device) for i in range(eval_episodes)]


@torch.no_grad()
def score_path(supernet: nn.Module, genotype, bn_batches: Sequence[torch.Tensor], episodes: Sequence[Episode]) -> float:
    net = supernet.subnet(genotype)
    recalibrate_bn(net, bn_batches)
    accs = [float((episode_logits(net, ep).argmax(-1) == ep.query_y).float().mean()) for ep in episodes]
    return sum(accs) / len(accs)


def mutate(g, supernet: nn.Module, prob: float, gen: torch.Generator):
    """Each choice is redrawn with probability ``prob`` (a redraw is a fresh sample of the same choice)."""
    fresh = supernet.sample_path(gen)
    return recombine(g, fresh, lambda: bool(torch.rand(1, generator=gen) < prob))


def crossover(a, b, gen: torch.Generator):
    """Per node (DARTS) or per layer (blocks), the choice of one parent or the other, with equal odds."""
    return recombine(a, b, lambda: bool(torch.rand(1, generator=gen) < 0.5))


def evolve(supernet: nn.Module, train: EpisodeSampler, val: EpisodeSampler, *, population: int = 20,
           generations: int = 10, top_k: int = 5, mutation_prob: float = 0.2, crossover_share: float = 0.5,
           eval_episodes: int = 20, bn_batches: int = 4, max_params: int | None = None, input_size=None,
           seed: int = 0, max_tries: int = 1000, progress: bool = True, latency: Callable | None = None,
           bounds: Sequence[LatencyBound] = (),
           on_generation: Callable[[int, list[Candidate]], None] | None = None) -> list[Candidate]:
    """Top candidates (best first) after ``generations`` rounds of selection, crossover and mutation.
    ``latency`` (genotype -> predicted ms) is recorded per candidate; every one of ``bounds`` must be met."""
    gen = torch.Generator().manual_seed(seed)
    device = next(supernet.parameters()).device
    batches, episodes = scoring_data(train, val, eval_episodes, bn_batches, device)
    seen: dict = {}
    rejected = {"seen before": 0, "over max_params": 0, **{b.name: 0 for b in bounds}}

    def admit(g) -> Candidate | None:
        """Score a new feasible candidate; None for a repeat or an infeasible one.  ``max_tries`` rejections
        in a row end the search with an error instead of a hang."""
        if sum(rejected.values()) >= max_tries:
            over = "".join(f"{rejected[b.name]} over {b.name}, " for b in bounds)
            raise SearchError(f"no new architecture within the constraints in {max_tries} draws in a row "
                              f"({rejected['over max_params']} over search.max_params={max_params}, {over}"
                              f"{rejected['seen before']} already seen); relax the constraints or widen the space")
        if g in seen:
            rejected["seen before"] += 1
            return None
        params = g.params(input_size) if input_size else 0
        if max_params is not None and params > max_params:
            rejected["over max_params"] += 1
            return None
        over = next((b for b in bounds if b.predict(g) > b.limit_ms), None)
        if over is not None:
            rejected[over.name] += 1
            return None
        ms = latency(g) if latency is not None else None
        rejected.update({k: 0 for k in rejected})
        seen[g] = Candidate(g, score_path(supernet, g, batches, episodes), params, ms)
        return seen[g]

    pop: list[Candidate] = []
    while len(pop) < population:  # bounded by max_tries inside admit
        c = admit(supernet.sample_path(gen))
        if c is not None:
            pop.append(c)
    for generation in tqdm(range(generations), desc="evolution", disable=not progress, leave=False):
        parents = sorted(seen.values(), key=lambda c: -c.score)[:top_k]
        children: list[Candidate] = []
        while len(children) < population:  # bounded by max_tries inside admit
            # choosing per draw (not a quota) lets mutation take over when near-identical parents only
            # cross into architectures already seen
            if len(parents) > 1 and float(torch.rand(1, generator=gen)) < crossover_share:
                i, j = torch.randperm(len(parents), generator=gen)[:2].tolist()
                g = crossover(parents[i].genotype, parents[j].genotype, gen)
            else:
                g = mutate(parents[int(torch.randint(len(parents), (1,), generator=gen))].genotype, supernet,
                           mutation_prob, gen)
            c = admit(g)
            if c is not None:
                children.append(c)
        if on_generation is not None:
            on_generation(generation, sorted(seen.values(), key=lambda c: -c.score)[:top_k])
    supernet.train()
    return sorted(seen.values(), key=lambda c: -c.score)
