"""What every section's check uses: ranges, names in a registry, and options against a factory's signature."""

from __future__ import annotations

import inspect
import math
from typing import Any

from ..errors import ConfigError


def positive(key: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}", key=key)


def known(key: str, name: str, registry) -> None:
    if name not in registry:
        raise ConfigError(f"{key}: unknown name '{name}'; choose one of {', '.join(sorted(registry))}", key=key)


def check_options(key: str, options: dict, params: dict[str, inspect.Parameter], owner: str) -> None:
    """Options must be parameters of the factory, with the type of their default."""
    for name, value in options.items():
        if name not in params:
            raise ConfigError(f"{key}.{name}: unknown option of {owner}; its options are "
                              f"{', '.join(params) or 'none'}", key=f"{key}.{name}")
        default = params[name].default
        if default is inspect.Parameter.empty or default is None:
            continue
        ok = (isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
              or isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
              or isinstance(default, (list, tuple)) and isinstance(value, list))
        if not ok:
            raise ConfigError(f"{key}.{name}: expected {type(default).__name__} like the default {default!r}, "
                              f"got {value!r}", key=f"{key}.{name}")
        if is_learning_rate(name):
            learning_rate(f"{key}.{name}", value)


def factory_params(factory: Any, skip: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """Keyword parameters of a factory; for a class whose __init__ passes **options on to its base class,
    the base class's parameters too."""
    out: dict[str, inspect.Parameter] = {}
    for owner in (inspect.getmro(factory) if inspect.isclass(factory) else (factory,)):
        if owner is object:
            break
        params = inspect.signature(owner.__init__ if inspect.isclass(owner) else owner).parameters
        out.update({k: p for k, p in params.items()
                    if k not in skip and k not in out and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)})
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def is_learning_rate(name: str) -> bool:
    return name == "lr" or name.endswith("_lr")


def learning_rate(key: str, value) -> None:
    """A learning rate must be a finite number above 0 (an infinite or zero one trains nothing or diverges)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}: a learning rate must be a finite number above 0, got {value!r}", key=key)
