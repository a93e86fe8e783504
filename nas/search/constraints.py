"""Latency bounds of a search: each a table with the most it may predict for the chosen network.

A deployed network is usually run at more than one batch size (one image at a time, and one episode at a
time), and a network faster than Conv-4 at one of them can be slower at the other, so the search takes a
bound per table: ``search.latency.table`` with ``target_ms``, and each of ``search.latency.also``.  A target
left out is ``target_factor`` times the prediction for ``search.latency.target_of``'s genotype on that table,
"no slower than the network I would otherwise pick"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from search_spaces import load_genotype

from ..config import LatencyConfig
from ..errors import ConfigError
from ..latency import LatencyPredictor


@dataclass
class LatencyBound:
    name: str  # the bound as a message names it: "search.latency.also.0.target_ms=1.2 on T"
    predictor: LatencyPredictor
    limit_ms: float
    table: str  # the table's file

    def predict(self, genotype) -> float:
        return self.predictor.predict(genotype)


def resolve_target(lc: LatencyConfig, key: str, target_ms: float | None, predictor: LatencyPredictor) -> float | None:
    """``target_ms``, or ``target_factor`` times the prediction for ``target_of`` on ``predictor``'s table."""
    if target_ms is not None or lc.target_of is None:
        return target_ms
    try:
        return lc.target_factor * predictor.predict(load_genotype(lc.target_of))
    except (KeyError, ValueError, AttributeError, IndexError, TypeError) as exc:  # another space's genotype
        raise ConfigError(f"search.latency.target_of: {lc.target_of} cannot be predicted with the table of {key} "
                          f"({exc}); give a genotype of this search's space and options", key="search.latency.target_of"
                          ) from None


def latency_bounds(lc: LatencyConfig, primary: LatencyPredictor | None,
                   load: Callable[[str], LatencyPredictor]) -> list[LatencyBound]:
    """The primary table's bound (when it has a target) and one per ``lc.also`` (``load``: a table file as a
    predictor checked against this device and space)."""
    bounds = []
    if primary is not None:
        target = resolve_target(lc, "search.latency.table", lc.target_ms, primary)
        if target is not None:
            bounds.append(LatencyBound(f"search.latency.target_ms={target:.4g} on {lc.table}", primary, target,
                                       lc.table))
    for i, extra in enumerate(lc.also):
        key = f"search.latency.also.{i}"
        predictor = load(extra.table)
        target = resolve_target(lc, key, extra.target_ms, predictor)
        if target is None:
            raise ConfigError(f"{key}: give it a target_ms, or search.latency.target_of a genotype to be no slower than",
                              key=key)
        bounds.append(LatencyBound(f"{key}.target_ms={target:.4g} on {extra.table}", predictor, target,
                                   extra.table))
    return bounds
