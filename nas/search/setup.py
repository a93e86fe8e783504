"""What a search is built from, built once: the strategy's class, the supernet (initialised from the run's seed),
the latency predictor of ``search.latency.table`` and, for a strategy that chooses by evolution, the check
that its constraints can be met.  ``nas.pipeline.prepare`` builds it before any run folder exists (so a bad
table or an infeasible constraint stops the command there) and the search loop trains what it built."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import create_supernet

from ..config import RunConfig
from ..latency import LatencyPredictor
from .constraints import LatencyBound, latency_bounds
from .evolution import check_feasible
from .latency import LatencyObjective, load_predictor
from .shortlist import check_spread
from .strategies import STRATEGIES, SearchStrategy, create_strategy

FEASIBILITY_DRAWS = 200  # random architectures tried before a constraint is called infeasible


@dataclass
class SearchSetup:
    cfg: RunConfig  # the config it was built from
    strategy_class: type[SearchStrategy]
    supernet: nn.Module
    predictor: LatencyPredictor | None
    bounds: list[LatencyBound]  # the primary table's (first, when it has a target) and search.latency.also's

    @property
    def target_ms(self) -> float | None:
        """The primary table's target: search.latency.target_ms, or the one derived from target_of."""
        return self.bounds[0].limit_ms if self.bounds and self.bounds[0].predictor is self.predictor else None

    def objective(self) -> LatencyObjective | None:
        """The latency term of a differentiable strategy's architecture loss (a table and a target given)."""
        lc = self.cfg.search.latency
        if not self.strategy_class.takes_latency or self.predictor is None or self.target_ms is None:
            return None
        return LatencyObjective(self.predictor, self.target_ms, lc.form, lc.beta, lc.lam)

    def latency_limits(self) -> list[LatencyBound]:
        """Evolution's latency constraints, for a strategy that chooses by evolution."""
        return self.bounds if self.strategy_class.chooses_by_evolution else []

    def strategy(self) -> SearchStrategy:
        sc = self.cfg.search
        return create_strategy(sc.sampler, self.supernet, steps=sc.steps, seed=self.cfg.seed,
                               latency=self.objective(), options=sc.sampler_options)


def build_search(cfg: RunConfig, image_shape: tuple[int, ...], device: torch.device) -> SearchSetup:
    sc = cfg.search
    torch.manual_seed(cfg.seed)
    supernet = create_supernet(sc.space, image_shape[0], **sc.space_options).to(device)
    lc = sc.latency

    def load(path: str) -> LatencyPredictor:
        return load_predictor(path, lc.force, sc.space, supernet, image_shape, device)

    predictor = load(lc.table) if lc.table else None
    setup = SearchSetup(cfg, STRATEGIES[sc.sampler], supernet, predictor, latency_bounds(lc, predictor, load))
    if setup.strategy_class.chooses_by_evolution:
        check_spread(supernet.sample_path(torch.Generator().manual_seed(0)), sc.evolution.rerank.spread_over)
        check_feasible(supernet, sc.max_params, image_shape, min(sc.evolution.max_tries, FEASIBILITY_DRAWS), cfg.seed,
                       setup.latency_limits())
    return setup
