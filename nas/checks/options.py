"""What every section's check uses: ranges, names in a registry, and options against a factory's signature."""

from __future__ import annotations

import inspect
import math
from typing import Any

from fsnas_core.options import OptionError, run_checks

from ..errors import ConfigError
from .types import conforms, describe


def positive(key: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}", key=key)


def known(key: str, name: str, registry) -> None:
    if name not in registry:
        raise ConfigError(f"{key}: unknown name '{name}'; choose one of {', '.join(sorted(registry))}", key=key)


def check_options(key: str, options: dict, params: dict[str, inspect.Parameter], owner: str) -> None:
    """Options must be parameters of the factory, of their annotated type (else the type of their default)."""
    for name, value in options.items():
        if name not in params:
            raise ConfigError(f"{key}.{name}: unknown option of {owner}; its options are "
                              f"{', '.join(params) or 'none'}", key=f"{key}.{name}")
        check_type(f"{key}.{name}", value, params[name])
        if is_learning_rate(name):
            learning_rate(f"{key}.{name}", value)


def check_type(key: str, value: Any, param: inspect.Parameter) -> None:
    default, annotation = param.default, param.annotation
    ok = None if annotation is param.empty else conforms(value, annotation)
    if ok is False:
        raise ConfigError(f"{key}: expected {describe(annotation)}, got {value!r}", key=key)
    if ok is None and default is not param.empty and default is not None and not (
            isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
            or isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
            or isinstance(default, (list, tuple)) and isinstance(value, list)):
        raise ConfigError(f"{key}: expected {type(default).__name__} like the default {default!r}, got {value!r}",
                          key=key)


def check_factory_options(key: str, options: dict, factory: Any, skip: tuple[str, ...], owner: str) -> dict:
    """``check_options`` against the factory's signature, then the value checks it declares
    (``fsnas_core.options``: a ``check_options`` classmethod), given every option with the defaults filled in;
    returns those filled-in options."""
    params = factory_params(factory, skip)
    check_options(key, options, params, owner)
    filled = {**{n: p.default for n, p in params.items() if p.default is not p.empty}, **options}
    try:
        run_checks(factory, filled)
    except OptionError as exc:
        raise ConfigError(f"{key}.{exc.option}: {exc.message}", key=f"{key}.{exc.option}") from None
    return filled


def factory_params(factory: Any, skip: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """Keyword parameters of a factory; for a class whose __init__ passes **options on to its base class,
    the base class's parameters too."""
    out: dict[str, inspect.Parameter] = {}
    for owner in (inspect.getmro(factory) if inspect.isclass(factory) else (factory,)):
        if owner is object:
            break
        params = signature(owner.__init__ if inspect.isclass(owner) else owner).parameters
        out.update({k: p for k, p in params.items()
                    if k not in skip and k not in out and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)})
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def signature(fn: Any) -> inspect.Signature:
    """With the annotations evaluated (modules use ``from __future__ import annotations``) where they can be."""
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        return inspect.signature(fn)


def is_learning_rate(name: str) -> bool:
    return name == "lr" or name.endswith("_lr")


def learning_rate(key: str, value) -> None:
    """A learning rate must be a finite number above 0 (an infinite or zero one trains nothing or diverges)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}: a learning rate must be a finite number above 0, got {value!r}", key=key)
