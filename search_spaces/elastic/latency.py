"""The elastic space's latency plan: every block, pooling and head a path can run, at every input shape it can
run at, so that ``fsnas latency build`` times each once and a genotype's latency is the sum of its slots.

A block's cost depends on its input width, which the previous stage's width choice sets, so slots are keyed by
their full shape (input channels, output channels, stride, height, width), enumerated stage by stage over the
states (channels, height, width) the earlier choices can reach.  Each slot is its own plan position."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ..latency_plan import LatencyPlan
from .genotype import ElasticGenotype, ElasticStage
from .network import head_of, make_block, pool_ceil

if TYPE_CHECKING:
    from .supernet import ElasticSupernet

POOLS = ("maxpool", "maxpool_ceil", "avgpool")


@dataclass(frozen=True)
class ElasticSlot:
    """One block (``block`` plain/residual, its kernel and convs; ``project``: a stage's first residual block,
    with its 1x1 shortcut) or one pooling (``block`` in POOLS) at one input shape."""
    block: str
    c_in: int
    c_out: int
    stride: int
    height: int
    width: int
    kernel: int = 0
    convs: int = 1
    project: bool = False

    @property
    def op(self) -> str:
        if self.block in POOLS:
            return self.block
        name = ElasticStage(self.block, 1, self.c_out, self.kernel, convs=self.convs).op
        return name + ("_proj" if self.project else "")

    @property
    def key(self) -> str:
        return f"elastic:{self.op}:{self.c_in}->{self.c_out}:s{self.stride}:{self.height}x{self.width}"

    def input_shape(self) -> tuple[int, int, int]:
        return (self.c_in, self.height, self.width)

    def output_hw(self) -> tuple[int, int]:
        if self.block == "avgpool":
            return 1, 1
        if self.block in ("maxpool", "maxpool_ceil"):
            half = math.ceil if self.block == "maxpool_ceil" else math.floor
            return half(self.height / 2), half(self.width / 2)
        return (self.height - 1) // self.stride + 1, (self.width - 1) // self.stride + 1  # same padding

    def build(self) -> nn.Module:
        """The module as the stand-alone network builds it (affine BatchNorm)."""
        if self.block == "avgpool":
            return head_of("avgpool")
        if self.block in ("maxpool", "maxpool_ceil"):
            return nn.MaxPool2d(2, ceil_mode=self.block == "maxpool_ceil")
        stage = ElasticStage(self.block, 1, self.c_out, self.kernel, "stride" if self.stride == 2 else "none",
                             self.convs)
        return make_block(stage, 0 if self.project or self.stride == 2 or self.block == "plain" else 1, self.c_in)


def stage_slots(stage: ElasticStage, c: int, h: int, w: int) -> tuple[list[ElasticSlot], tuple[int, int, int]]:
    """The slots one stage runs from input (c, h, w), and its output state."""
    slots = []
    for j in range(stage.depth):
        stride = 2 if j == 0 and stage.down == "stride" else 1
        slot = ElasticSlot(stage.block, c if j == 0 else stage.width, stage.width, stride, h, w, stage.kernel,
                           stage.convs, project=stage.block == "residual" and j == 0)
        slots.append(slot)
        h, w = slot.output_hw()
    if stage.down == "maxpool":
        pool = ElasticSlot("maxpool_ceil" if pool_ceil(stage.block) else "maxpool", stage.width, stage.width, 1, h, w)
        slots.append(pool)
        h, w = pool.output_hw()
    return slots, (stage.width, h, w)


def genotype_slots(genotype: ElasticGenotype, image_shape: tuple[int, int, int]) -> list[ElasticSlot]:
    """Every slot ``genotype`` runs on images of ``image_shape``, in order."""
    state, out = tuple(image_shape), []
    for stage in genotype.stages:
        slots, state = stage_slots(stage, *state)
        out += slots
    if genotype.head == "avgpool":
        out.append(ElasticSlot("avgpool", state[0], state[0], 1, state[1], state[2]))
    return out


def stage_choices(supernet: "ElasticSupernet", i: int) -> list[ElasticStage]:
    """Every stage the supernet's stage ``i`` can be (its depth at most the largest: shallower ones run a
    prefix of its slots)."""
    return [ElasticStage(block, supernet.depths[-1], width, kernel, down, convs)
            for block in supernet.blocks for width in supernet.widths[i] for kernel in supernet.kernels
            for down in supernet.downsampling for convs in (supernet.convs if block == "residual" else (1,))]


def elastic_plan(supernet: "ElasticSupernet", image_shape: tuple[int, int, int]) -> LatencyPlan:
    """All slots any path can run, stage by stage over the reachable states; one position per slot."""
    slots: dict[str, ElasticSlot] = {}
    states = {tuple(image_shape)}
    for i in range(supernet.stage_counts[-1]):
        reached = set()
        for state in sorted(states):
            for stage in stage_choices(supernet, i):
                for depth in supernet.depths:  # a shallower stage ends (and pools) at another size
                    run, out = stage_slots(ElasticStage(stage.block, depth, stage.width, stage.kernel, stage.down,
                                                        stage.convs), *state)
                    slots.update((s.key, s) for s in run)
                    reached.add(out)
        states = reached
        if i + 1 in supernet.stage_counts and "avgpool" in supernet.heads:
            for c, h, w in states:
                slot = ElasticSlot("avgpool", c, c, 1, h, w)
                slots[slot.key] = slot
    ops = tuple(sorted({s.op for s in slots.values()}))
    positions = tuple(tuple(s if op == s.op else None for op in ops) for s in slots.values())
    return LatencyPlan(ops, positions, ())
