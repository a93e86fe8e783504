"""search_spaces: what can be searched (ops, spaces, supernets, genotypes) and fixed backbones.
Depends on torch only."""

from . import fixed  # noqa: F401  (registers conv4, resnet12)
from .registry import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "register_model"]
