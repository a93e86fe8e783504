"""The block space (ProxylessNAS / FBNet style): a chain of stages, each layer choosing an MBConv variant
or, after a stage's first layer, ``skip_connect`` (dropping the layer, so depth is searched too).

Same three modes as the DARTS supernet: mixed (``forward(x)``), single path (``forward(x, path=genotype)``),
fixed (``subnet(genotype)`` -> ``BlockNetwork`` with inherited weights).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from . import mbconv  # noqa: F401  (registers the MBConv ops)
from .genotypes import BlockGenotype, Stage
from .latency_plan import FixedPart, LatencyPlan, OpSlot, frozen_copy, input_shapes
from fsnas_core.options import OptionError, above_zero, at_least, one_of

from .ops import create_op, op_choices
from .registry import NETWORKS, SPACES
from .weighting import WEIGHTINGS, op_weights

DEFAULT_CHOICES = ("mbconv_k3_e3", "mbconv_k3_e6", "mbconv_k5_e3", "mbconv_k5_e6", "mbconv_k7_e3", "mbconv_k7_e6",
                   "skip_connect")
DEFAULT_STAGES = ((24, 2, 2), (40, 2, 2), (80, 3, 2), (96, 2, 1))  # (channels, layers, stride of the first)


def block_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


def _layers(stem_channels: int, stages: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int, bool]]:
    """(c_in, c_out, stride, first_of_stage) of every layer, from (channels, layers, stride) per stage."""
    out, c_in = [], stem_channels
    for channels, layers, stride in stages:
        for i in range(layers):
            out.append((c_in, channels, stride if i == 0 else 1, i == 0))
            c_in = channels
    return out


@NETWORKS.register("blocks")
class BlockNetwork(nn.Module):
    """The stand-alone backbone of a block genotype: [B, C, H, W] -> [B, last stage channels]."""

    def __init__(self, genotype: BlockGenotype, in_channels: int = 3, affine: bool = True) -> None:
        super().__init__()
        self.genotype = genotype
        self.stem = block_stem(in_channels, genotype.stem_channels)
        stages = [(s.channels, len(s.ops), s.stride) for s in genotype.stages]
        ops = [op for s in genotype.stages for op in s.ops]
        self.layers = nn.ModuleList(create_op(op, c_in, c_out, stride, affine)
                                    for op, (c_in, c_out, stride, _) in zip(ops, _layers(genotype.stem_channels, stages)))
        self.out_channels = genotype.stages[-1].channels
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.pool(x).flatten(1)


@SPACES.register("blocks")
class BlockSupernet(nn.Module):
    differentiable = True  # mixed mode: architecture parameters that DARTS / GDAS train

    def __init__(self, in_channels: int = 3, stem_channels: int = 16,
                 stages: Sequence[Sequence[int]] = DEFAULT_STAGES, choices: Sequence[str] = DEFAULT_CHOICES,
                 weighting: str = "softmax", tau: float = 1.0) -> None:
        super().__init__()
        self.check_options(dict(locals()))
        self.in_channels, self.stem_channels = in_channels, stem_channels
        self.stages = tuple(tuple(int(v) for v in s) for s in stages)
        self.choices, self.weighting, self.tau = tuple(choices), weighting, tau
        self.op_index = {name: i for i, name in enumerate(self.choices)}
        self.stem = block_stem(in_channels, stem_channels)
        self.shapes = _layers(stem_channels, self.stages)
        # a stage's first layer changes shape, so it cannot be skipped: its skip choice is masked out
        self.layers = nn.ModuleList(
            nn.ModuleList(create_op(op, c_in, c_out, stride, affine=False) if not (first and op == "skip_connect")
                          else nn.Identity() for op in self.choices)
            for c_in, c_out, stride, first in self.shapes)
        mask = torch.tensor([[first and op == "skip_connect" for op in self.choices] for *_, first in self.shapes])
        self.register_buffer("skip_mask", mask, persistent=False)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(self.shapes), len(self.choices)))
        self.out_channels = self.stages[-1][0]
        self.pool = nn.AdaptiveAvgPool2d(1)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Stages of [channels >= 1, layers >= 1, stride 1 or 2], known choices with one that is not
        skip_connect (a stage's first layer cannot skip), and the weighting's settings."""
        at_least(options, 1, "stem_channels")
        if not options["stages"]:
            raise OptionError("stages", "needs at least one stage, e.g. [[24, 2, 2], [40, 2, 2]]")
        for i, stage in enumerate(options["stages"]):
            if len(stage) != 3 or min(stage[:2], default=0) < 1 or stage[2] not in (1, 2):
                raise OptionError("stages", f"stage {i} is {list(stage)}; give each stage as [channels >= 1, "
                                            f"layers >= 1, stride 1 or 2]")
        op_choices("choices", options["choices"], sets=False, refused=("none",), needs_other_than="skip_connect")
        one_of(options, "weighting", WEIGHTINGS)
        above_zero(options, "tau")

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def arch_weights(self) -> torch.Tensor:
        return op_weights(self.alpha.masked_fill(self.skip_mask, float("-inf")), self.weighting, self.tau)

    def forward(self, x: torch.Tensor, path: BlockGenotype | None = None) -> torch.Tensor:
        x = self.stem(x)
        if path is None:
            weights = self.arch_weights()
            for ops, w, masked in zip(self.layers, weights, self.skip_mask.tolist()):
                if self.weighting == "gumbel":
                    i = int(w.argmax())
                    x = w[i] * ops[i](x)
                else:
                    x = sum(wi * op(x) for wi, op, m in zip(w, ops, masked) if not m)
        else:
            for ops, name in zip(self.layers, self._path_ops(path)):
                x = ops[self.op_index[name]](x)
        return self.pool(x).flatten(1)

    def _path_ops(self, g: BlockGenotype) -> list[str]:
        if not isinstance(g, BlockGenotype):
            raise ValueError(f"a {getattr(g, 'kind', type(g).__name__)} genotype is not an architecture of the blocks "
                             f"space")
        if g.stem_channels != self.stem_channels or [(s.channels, len(s.ops), s.stride) for s in g.stages] != \
                [tuple(s) for s in self.stages]:
            raise ValueError("genotype stages (channels, layers, stride) differ from the supernet's")
        names = [op for s in g.stages for op in s.ops]
        bad = [n for n in names if n not in self.op_index]
        if bad:
            raise ValueError(f"genotype uses op '{bad[0]}', which is not a choice of this supernet")
        return names

    def _genotype(self, names: list[str]) -> BlockGenotype:
        stages, k = [], 0
        for channels, layers, stride in self.stages:
            stages.append(Stage(channels, stride, tuple(names[k: k + layers])))
            k += layers
        return BlockGenotype(stages=tuple(stages), stem_channels=self.stem_channels)

    def derive(self) -> BlockGenotype:
        w = self.alpha.detach().masked_fill(self.skip_mask, float("-inf"))
        return self._genotype([self.choices[int(i)] for i in w.argmax(-1)])

    def sample_path(self, generator: torch.Generator | None = None) -> BlockGenotype:
        names = []
        for row in self.skip_mask:
            allowed = [c for c, masked in zip(self.choices, row.tolist()) if not masked]
            names.append(allowed[int(torch.randint(len(allowed), (1,), generator=generator))])
        return self._genotype(names)

    # -- latency ---------------------------------------------------------------------------------
    def latency_plan(self, image_shape: tuple[int, int, int]) -> LatencyPlan:
        """Positions: the layers, in order; fixed: stem and pooling."""
        groups = [[self.stem]] + [[op for op, m in zip(ops, masked) if not m]
                                  for ops, masked in zip(self.layers, self.skip_mask.tolist())] + [[self.pool]]
        shapes = input_shapes(self, groups, lambda: self(torch.zeros(1, *image_shape, device=self.alpha.device)))
        positions = tuple(tuple(None if m else OpSlot(op, c_in, c_out, stride, h, w)
                                for op, m in zip(self.choices, masked))
                          for (c_in, c_out, stride, _), masked, (_, h, w) in
                          zip(self.shapes, self.skip_mask.tolist(), shapes[1:-1]))
        return LatencyPlan(self.choices, positions, (FixedPart("stem", frozen_copy(self.stem), shapes[0]),
                                                     FixedPart("pool", frozen_copy(self.pool), shapes[-1])))

    def genotype_positions(self, genotype: BlockGenotype) -> list[tuple[int, int]]:
        """(position, op index) of every layer, positions as in ``latency_plan``."""
        return [(p, self.op_index[n]) for p, n in enumerate(self._path_ops(genotype))]

    def position_weights(self) -> torch.Tensor:
        """[layers, choices]: the op weights of each layer (masked choices 0), differentiable in alpha."""
        if self.weighting == "gumbel":
            return torch.softmax(self.alpha.masked_fill(self.skip_mask, float("-inf")), -1)
        return self.arch_weights()

    def subnet(self, genotype: BlockGenotype) -> BlockNetwork:
        names = self._path_ops(genotype)
        net = BlockNetwork(genotype, self.in_channels, affine=False)
        net.stem = copy.deepcopy(self.stem)
        net.layers = nn.ModuleList(copy.deepcopy(ops[self.op_index[n]]) for ops, n in zip(self.layers, names))
        return net.train(self.training)
