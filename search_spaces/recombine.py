"""Recombining two genotypes of one kind, choice by choice: what evolutionary search crosses over and mutates
(a mutation recombines with a freshly sampled path).  ``CROSSOVERS[kind](a, b, take_b)`` takes ``b``'s choice
wherever ``take_b()`` is true; ``take_b`` is called once per choice, in a fixed order, so a seeded caller is
reproducible."""

from __future__ import annotations

from typing import Callable

from .genotypes import BlockGenotype, CellGenotype, DartsGenotype, Stage
from .registry import CROSSOVERS


def recombine(a, b, take_b: Callable[[], bool]):
    return CROSSOVERS[a.kind](a, b, take_b)


def _cell(a: CellGenotype, b: CellGenotype, take_b: Callable[[], bool]) -> CellGenotype:
    # whole nodes are exchanged, so each node keeps two distinct inputs
    return CellGenotype(tuple(nb if take_b() else na for na, nb in zip(a.nodes, b.nodes)), a.concat)


@CROSSOVERS.register("darts")
def darts_cells(a: DartsGenotype, b: DartsGenotype, take_b: Callable[[], bool]) -> DartsGenotype:
    """Per node of the normal cell, then of the reduction cell."""
    normal, reduce = _cell(a.normal, b.normal, take_b), _cell(a.reduce, b.reduce, take_b)
    return DartsGenotype(normal=normal, reduce=reduce, channels=a.channels, cells=a.cells,
                         stem_multiplier=a.stem_multiplier)


@CROSSOVERS.register("blocks")
def block_layers(a: BlockGenotype, b: BlockGenotype, take_b: Callable[[], bool]) -> BlockGenotype:
    """Per layer, stage after stage."""
    stages = tuple(Stage(sa.channels, sa.stride, tuple(ob if take_b() else oa for oa, ob in zip(sa.ops, sb.ops)))
                   for sa, sb in zip(a.stages, b.stages))
    return BlockGenotype(stages=stages, stem_channels=a.stem_channels)
