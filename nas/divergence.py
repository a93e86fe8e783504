"""Stopping a diverging phase (search, pretraining, meta-training) before it writes non-finite weights.

``DivergenceGuard.loss`` is told every step's loss; ``DivergenceGuard.state`` checks what is about to be
saved (a checkpoint, model.pt) and raises ``Diverged`` naming the step, the last finite loss and what to
change.  Checking what is saved, not every gradient, is enough: a non-finite gradient makes the weights
non-finite at the step it is applied, and the next loss with them."""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import Diverged


def first_non_finite(state: Any, where: str = "") -> str | None:
    """The key path of the first floating tensor or float in ``state`` (nested dicts / lists) that is not finite."""
    if isinstance(state, torch.Tensor):
        return (where or "tensor") if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    if isinstance(state, float):
        return (where or "value") if not math.isfinite(state) else None
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


class DivergenceGuard:
    def __init__(self, phase: str, fix: str) -> None:
        self.phase, self.fix = phase, fix  # fix: what the user should change, e.g. "lower train.options.lr"
        self.last: tuple[int, float] | None = None

    def loss(self, step: int, value: float) -> None:
        if not math.isfinite(value):
            raise Diverged(self._message(step, f"the loss became {value}"))
        self.last = (step, value)

    def state(self, step: int, state: Any, what: str) -> None:
        bad = first_non_finite(state)
        if bad:
            raise Diverged(self._message(step, f"{bad} in the {what} became non-finite"))

    def _message(self, step: int, what: str) -> str:
        last = (f"last finite loss {self.last[1]:.4g} at step {self.last[0]}" if self.last is not None
                else "no finite loss before it")
        return (f"{self.phase}: {what} at step {step} ({last}). Stopped without saving those weights (any earlier "
                f"checkpoint and model.pt are kept). {self.fix}, then continue from the last checkpoint with "
                f"--resume")
