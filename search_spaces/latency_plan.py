"""What a latency table of a space times: every candidate op at every position, at the shape it runs there,
and the parts every architecture runs (stem, cell preprocessing, pooling).

Shapes come from running the supernet once with hooks on the modules, so the plan follows whatever the
space builds.  Ops are timed as the stand-alone network builds them (full channels, affine BatchNorm).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .ops import create_op


@dataclass(frozen=True)
class OpSlot:
    """One op at one input shape; positions of the same shape share a table entry."""
    op: str
    c_in: int
    c_out: int
    stride: int
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"{self.op}:{self.c_in}->{self.c_out}:s{self.stride}:{self.height}x{self.width}"

    def input_shape(self) -> tuple[int, int, int]:
        return (self.c_in, self.height, self.width)

    def build(self) -> nn.Module:
        return create_op(self.op, self.c_in, self.c_out, self.stride, affine=True)


@dataclass(frozen=True)
class FixedPart:
    """A module every architecture of the space runs, with its input shape [C, H, W]."""
    name: str
    factory: Callable[[], nn.Module]
    shape: tuple[int, int, int]

    @property
    def key(self) -> str:
        return f"fixed:{self.name}:{'x'.join(map(str, self.shape))}"


@dataclass(frozen=True)
class LatencyPlan:
    """``positions[p][o]``: the slot of op ``ops[o]`` at choice position ``p`` (None: not allowed there, or
    free like ``none``); ``fixed``: the parts outside the choices."""
    ops: tuple[str, ...]
    positions: tuple[tuple[OpSlot | None, ...], ...]
    fixed: tuple[FixedPart, ...]

    def slots(self) -> dict[str, OpSlot]:
        """The distinct slots to time, by key."""
        return {s.key: s for row in self.positions for s in row if s is not None}


def input_shapes(model: nn.Module, groups: Sequence[Sequence[nn.Module]],
                 run: Callable[[], object]) -> list[tuple[int, ...]]:
    """For each group of modules (e.g. the candidate ops of one position, of which one may run), the
    [C, H, W] of the first input any of them receives during ``run()``."""
    shapes: dict[int, tuple[int, ...]] = {}

    def record(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(i, tuple(args[0].shape[1:]))
        return hook

    hooks = [m.register_forward_pre_hook(record(i)) for i, group in enumerate(groups) for m in group]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    missing = [i for i in range(len(groups)) if i not in shapes]
    if missing:
        raise RuntimeError(f"{len(missing)} positions never ran while tracing the supernet's shapes")
    return [shapes[i] for i in range(len(groups))]


def frozen_copy(module: nn.Module) -> Callable[[], nn.Module]:
    """A factory of copies of ``module`` (for fixed parts: their cost does not depend on the architecture)."""
    snapshot = copy.deepcopy(module)
    return lambda: copy.deepcopy(snapshot)
