"""What every fsnas library shares: the registry shape.  Imports nothing of fsnas, so ``search_spaces``,
``meta`` and ``nas`` can all depend on it without depending on each other."""

from .registry import Registry

__all__ = ["Registry"]
