"""Which of evolution's candidates a re-ranking trains: the best by one-shot score, or the best of each family
of networks in turn (``search.evolution.rerank.spread_over``)."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .evolution import Candidate


def family(genotype, fields: list[str]) -> tuple:
    """The values of ``fields`` in the genotype's dict, a list counted by its length (the number of stages)."""
    d = genotype.to_dict()
    return tuple(len(d[f]) if isinstance(d[f], list) else d[f] for f in fields)


def check_spread(genotype, fields: list[str]) -> None:
    """Every field of ``rerank.spread_over`` is a field of the space's genotypes (checked before any training)."""
    missing = [f for f in fields if f not in genotype.to_dict()]
    if missing:
        raise ConfigError(f"search.evolution.rerank.spread_over: {', '.join(missing)} not a field of this space's "
                          f"genotypes; use some of {', '.join(genotype.to_dict())}",
                          key="search.evolution.rerank.spread_over")


def pick_shortlist(candidates: list[Candidate], top: int, spread_over: list[str],
                   accept: Callable[[object], bool] | None = None) -> tuple[list, list]:
    """(shortlist, rest).  Without ``spread_over``, the ``top`` best by one-shot score.  With it, the best of each
    family (the values of those genotype fields) in turn, families ordered by their best: one-shot scores
    compare networks of one family better than across families (docs/benchmarks.md, the ranking section),
    so a shortlist of one family would carry a supernet's bias between families into the choice.
    ``accept(genotype)`` (a measured latency check): a candidate it refuses is passed over for the next one,
    and asked only when the shortlist would otherwise take it."""
    families: dict[tuple, list[Candidate]] = {}
    for c in candidates:  # best first, so each family's list is too
        families.setdefault(family(c.genotype, spread_over), []).append(c)
    queues, shortlist = list(families.values()), []
    while len(shortlist) < top and any(queues):
        for q in queues:
            while q and len(shortlist) < top:
                c = q.pop(0)
                if accept is None or accept(c.genotype):
                    shortlist.append(c)
                    break
    picked = {id(c) for c in shortlist}
    return shortlist, [c for c in candidates if id(c) not in picked]
