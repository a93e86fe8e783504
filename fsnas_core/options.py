"""Option checks a registered factory declares, shared by every library.

A class registered by name (a search space, a search strategy) declares the values its options may take in a
classmethod ``check_options(options)``; a function factory (a fixed model) gets one with
``@declares_checks(check)``.  ``options`` holds every option, the defaults filled in, so a check can relate two
of them.  A bad value raises ``OptionError`` naming the option: the factory's constructor calls the check too,
and the config checks of ``nas`` turn the error into a message naming the config key.  Types are checked
against the signature before (``nas.checks.options``): a check may assume each value has its annotated type."""

from __future__ import annotations

from typing import Any, Callable, Iterable


class OptionError(ValueError):
    """A bad option value: ``option`` names it, ``message`` says what it must be."""

    def __init__(self, option: str, message: str) -> None:
        self.option, self.message = option, message
        super().__init__(f"{option}: {message}")


def declares_checks(check: Callable[[dict], None]):
    """Decorator: a function factory's ``check_options``."""
    def attach(factory):
        factory.check_options = check
        return factory
    return attach


def run_checks(factory: Any, options: dict) -> None:
    """The factory's declared ``check_options`` (if any) on ``options``."""
    check = getattr(factory, "check_options", None)
    if callable(check):
        check(options)


def at_least(options: dict, minimum: int | float, *names: str) -> None:
    for name in names:
        if options[name] < minimum:
            raise OptionError(name, f"must be at least {minimum}, got {options[name]!r}")


def above_zero(options: dict, *names: str) -> None:
    for name in names:
        if not options[name] > 0:
            raise OptionError(name, f"must be above 0, got {options[name]!r}")


def in_range(options: dict, low: float, high: float, *names: str) -> None:
    for name in names:
        if not low <= options[name] <= high:
            raise OptionError(name, f"must lie in [{low}, {high}], got {options[name]!r}")


def one_of(options: dict, name: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if options[name] not in choices:
        raise OptionError(name, f"'{options[name]}' is not a choice; use one of {', '.join(choices)}")
