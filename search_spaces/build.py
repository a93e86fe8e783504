"""Genotype -> stand-alone network (through the ``NETWORKS`` registry of each genotype kind), space name ->
supernet (``SPACES``)."""

from __future__ import annotations

from torch import nn

from .registry import MODELS, NETWORKS, SPACES


def create_supernet(space: str, in_channels: int, **options) -> nn.Module:
    return SPACES[space](in_channels=in_channels, **options)


def build_network(genotype, in_channels: int = 3, affine: bool = True) -> nn.Module:
    """The backbone a genotype describes, freshly initialised: [B, C, H, W] -> [B, features]."""
    kind = getattr(genotype, "kind", None)
    if kind not in NETWORKS:
        raise TypeError(f"not a genotype: {type(genotype).__name__}")
    return NETWORKS[kind](genotype, in_channels, affine)


@NETWORKS.register("fixed")
def fixed_network(genotype, in_channels: int = 3, affine: bool = True) -> nn.Module:
    """A hand-designed backbone (``affine`` does not apply: its BatchNorm is its own)."""
    return MODELS[genotype.model](in_channels=in_channels, **dict(genotype.options))
