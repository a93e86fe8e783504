"""An episode's shape (train.episode, search.episode, eval.tasks.N): ways, shots, queries, shot profile."""

from __future__ import annotations

from meta.shot_profiles import SHOT_PROFILES

from ..config import EpisodeConfig
from ..errors import ConfigError
from .options import positive


def check_episode(key: str, ep: EpisodeConfig) -> None:
    positive(f"{key}.n_way", ep.n_way, 2)
    positive(f"{key}.k_shot", ep.k_shot)
    positive(f"{key}.n_query", ep.n_query)
    if ep.shot_profile not in SHOT_PROFILES:
        raise ConfigError(f"{key}.shot_profile: unknown profile '{ep.shot_profile}'; choose one of "
                          f"{', '.join(SHOT_PROFILES)}", key=f"{key}.shot_profile")
    if ep.shot_profile != "balanced" and not 1 <= ep.min_shot <= ep.k_shot:
        raise ConfigError(f"{key}.min_shot: {ep.min_shot} must be between 1 and k_shot ({ep.k_shot}) for an "
                          f"imbalanced support", key=f"{key}.min_shot")
