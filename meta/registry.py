"""meta's registries (datasets, learners, losses, shot profiles) have fsnas's one registry shape."""

from fsnas_core.registry import Registry

__all__ = ["Registry"]
