"""Imbalanced support sets: how many support images each class of an episode gets.

A profile maps (n_way, k_max, k_min, generator) to ``n_way`` shot counts between ``k_min`` and ``k_max``;
the episode's classes are already in random order, so a profile that is fixed by position (linear, step)
still gives the large supports to random classes.  ``balanced`` is the usual K-shot episode."""

from __future__ import annotations

import torch

from .registry import Registry

SHOT_PROFILES: Registry = Registry("shot profile")


@SHOT_PROFILES.register("balanced")
def balanced(n_way: int, k_max: int, k_min: int, g: torch.Generator) -> list[int]:
    return [k_max] * n_way


@SHOT_PROFILES.register("linear")
def linear(n_way: int, k_max: int, k_min: int, g: torch.Generator) -> list[int]:
    """From k_max for the first class down to k_min for the last, evenly spaced (rounded)."""
    if n_way == 1:
        return [k_max]
    return [round(k_max - (k_max - k_min) * i / (n_way - 1)) for i in range(n_way)]


@SHOT_PROFILES.register("step")
def step(n_way: int, k_max: int, k_min: int, g: torch.Generator) -> list[int]:
    """Step imbalance (Buda et al., 2018): the first half of the classes (rounded up) k_max, the rest k_min."""
    major = (n_way + 1) // 2
    return [k_max] * major + [k_min] * (n_way - major)


@SHOT_PROFILES.register("random")
def random(n_way: int, k_max: int, k_min: int, g: torch.Generator) -> list[int]:
    """Every class an independent uniform count in [k_min, k_max]."""
    return torch.randint(k_min, k_max + 1, (n_way,), generator=g).tolist()


def shot_counts(profile: str, n_way: int, k_max: int, k_min: int, g: torch.Generator) -> list[int]:
    if not 1 <= k_min <= k_max:
        raise ValueError(f"an imbalanced support needs 1 <= min_shot <= k_shot, got min_shot {k_min}, k_shot {k_max}")
    return SHOT_PROFILES[profile](n_way, k_max, k_min, g)
