"""MODELS: backbone name -> factory, and ``create_model(name, **kwargs)`` as in timm."""

from __future__ import annotations

from typing import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise KeyError(f"model '{name}' is registered twice")
        MODELS[name] = factory
        return factory
    return add


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
