"""Genotype -> stand-alone network, and the SPACES registry of supernets (name -> factory)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .blocks import BlockNetwork, BlockSupernet
from .darts import DartsNetwork, DartsSupernet
from .genotypes import BlockGenotype, DartsGenotype, FixedGenotype, Genotype
from .registry import create_model

SPACES: dict[str, Callable[..., nn.Module]] = {"darts": DartsSupernet, "blocks": BlockSupernet}


def create_supernet(space: str, in_channels: int, **options) -> nn.Module:
    if space not in SPACES:
        raise KeyError(f"unknown search space '{space}'; known: {', '.join(sorted(SPACES))}")
    return SPACES[space](in_channels=in_channels, **options)


def build_network(genotype: Genotype, in_channels: int = 3, affine: bool = True) -> nn.Module:
    """The backbone a genotype describes, freshly initialised: [B, C, H, W] -> [B, features]."""
    if isinstance(genotype, DartsGenotype):
        return DartsNetwork(genotype, in_channels, affine)
    if isinstance(genotype, BlockGenotype):
        return BlockNetwork(genotype, in_channels, affine)
    if isinstance(genotype, FixedGenotype):
        return create_model(genotype.model, in_channels=in_channels, **dict(genotype.options))
    raise TypeError(f"not a genotype: {type(genotype).__name__}")
