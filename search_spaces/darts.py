"""The DARTS cell space: MixedOp, the search cell, the supernet, and the stand-alone network of a genotype.

One supernet, three modes:

- mixed: ``supernet(x)`` weights every op of every edge by the architecture parameters (softmax as
  DARTS, sigmoid as Fair-DARTS, or hard Gumbel-softmax as GDAS, which computes one op per edge);
- single path: ``supernet(x, path=genotype)`` computes only the chosen (op, input) edges (SPOS);
- fixed: ``supernet.subnet(genotype)`` is a stand-alone ``DartsNetwork`` holding only the chosen ops,
  with the supernet's weights, and it computes exactly what the single path computes.

The architecture parameters ``alpha_normal`` / ``alpha_reduce`` are ``nn.Parameter``s of the supernet
(so they live in its ``state_dict``), kept out of ``weight_parameters()``.
"""

from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .genotypes import CellGenotype, DartsGenotype, reduction_cells
from .latency_plan import FixedPart, LatencyPlan, OpSlot, frozen_copy, input_shapes
from fsnas_core.options import OptionError, above_zero, at_least, one_of

from .ops import FactorizedReduce, ReLUConvBN, create_op, op_choices
from .registry import NETWORKS, SPACES
from .weighting import WEIGHTINGS, op_weights


def cell_plan(cells: int, channels: int, stem_multiplier: int, multiplier: int) -> Iterator[tuple]:
    """(c_prev_prev, c_prev, c, reduction, reduction_prev) for each cell; channels double at reductions."""
    reductions = reduction_cells(cells)
    c_pp = c_p = channels * stem_multiplier
    c, reduction_prev = channels, False
    for i in range(cells):
        reduction = i in reductions
        if reduction:
            c *= 2
        yield c_pp, c_p, c, reduction, reduction_prev
        c_pp, c_p, reduction_prev = c_p, multiplier * c, reduction


def stem(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))


def preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool) -> tuple[nn.Module, nn.Module]:
    pre0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


def edge_offset(node: int) -> int:
    """Index of the first edge into intermediate node ``node`` (node 0 has 2 inputs, node 1 has 3, ...)."""
    return node * (node + 3) // 2


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """All candidate ops of one edge.  With ``partial_channels`` K > 1 (PC-DARTS) only 1/K of the
    channels go through the ops; the rest bypass them and the result is channel-shuffled."""

    def __init__(self, channels: int, stride: int, op_names: Sequence[str], partial_channels: int = 1,
                 aux_skip: bool = False) -> None:
        super().__init__()
        self.k, self.stride = partial_channels, stride
        c = channels // partial_channels
        self.ops = nn.ModuleList(create_op(name, c, c, stride, affine=False) for name in op_names)
        # DARTS- (Chu et al. 2021): an auxiliary skip outside the competition, faded out during search
        self.aux = create_op("skip_connect", c, c, stride, affine=False) if aux_skip else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor, hard: bool = False,
                aux_beta: torch.Tensor | None = None) -> torch.Tensor:
        xa = x[:, : x.shape[1] // self.k] if self.k > 1 else x
        if hard:  # one-hot weights (GDAS): run the chosen op only, keep the gradient through its weight
            i = int(weights.argmax())
            out = weights[i] * self.ops[i](xa)
        else:
            out = sum(w * op(xa) for w, op in zip(weights, self.ops))
        if self.aux is not None and aux_beta is not None:
            out = out + aux_beta * self.aux(xa)
        if self.k == 1:
            return out
        xb = x[:, x.shape[1] // self.k:]
        if self.stride == 2:
            xb = F.max_pool2d(xb, 2, 2, ceil_mode=True)
        return channel_shuffle(torch.cat([out, xb], dim=1), self.k)


class SearchCell(nn.Module):
    def __init__(self, nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 op_names: Sequence[str], partial_channels: int = 1, aux_skip: bool = False) -> None:
        super().__init__()
        self.nodes, self.reduction = nodes, reduction
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1, op_names, partial_channels, aux_skip)
            for i in range(nodes) for j in range(i + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, hard: bool = False,
                aux_beta: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(self.nodes):
            off = edge_offset(i)
            states.append(sum(self.edges[off + j](h, weights[off + j], hard, aux_beta) for j, h in enumerate(states)))
        return torch.cat(states[2:], dim=1)

    def forward_path(self, s0: torch.Tensor, s1: torch.Tensor, cell: CellGenotype,
                     op_index: dict[str, int]) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i, node in enumerate(cell.nodes):
            off = edge_offset(i)
            states.append(sum(self.edges[off + src].ops[op_index[op]](states[src]) for op, src in node))
        return torch.cat([states[c] for c in cell.concat], dim=1)


class FixedCell(nn.Module):
    """A cell holding only the ops a genotype chose."""

    def __init__(self, cell: CellGenotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 affine: bool = True) -> None:
        super().__init__()
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine)
        self.inputs = [[src for _, src in node] for node in cell.nodes]
        self.concat = list(cell.concat)
        self.ops = nn.ModuleList(create_op(op, c, c, 2 if reduction and src < 2 else 1, affine)
                                 for node in cell.nodes for op, src in node)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states, k = [self.pre0(s0), self.pre1(s1)], 0
        for srcs in self.inputs:
            out = 0
            for src in srcs:
                out = out + self.ops[k](states[src])
                k += 1
            states.append(out)
        return torch.cat([states[c] for c in self.concat], dim=1)


@NETWORKS.register("darts")
class DartsNetwork(nn.Module):
    """The stand-alone backbone of a DARTS genotype: [B, C, H, W] -> [B, features] (global average pool)."""

    def __init__(self, genotype: DartsGenotype, in_channels: int = 3, affine: bool = True) -> None:
        super().__init__()
        self.genotype = genotype
        g = genotype
        self.stem = stem(in_channels, g.channels * g.stem_multiplier)
        self.cells = nn.ModuleList()
        plan = cell_plan(g.cells, g.channels, g.stem_multiplier, len(g.normal.concat))
        for c_pp, c_p, c, reduction, reduction_prev in plan:
            cell = g.reduce if reduction else g.normal
            self.cells.append(FixedCell(cell, c_pp, c_p, c, reduction, reduction_prev, affine))
        self.out_channels = len(g.normal.concat) * c
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.pool(s1).flatten(1)


@SPACES.register("darts")
class DartsSupernet(nn.Module):
    differentiable = True  # mixed mode: architecture parameters that DARTS / GDAS train

    def __init__(self, in_channels: int = 3, channels: int = 16, cells: int = 5, nodes: int = 4,
                 stem_multiplier: int = 3, ops: str | Sequence[str] = "darts", partial_channels: int = 1,
                 weighting: str = "softmax", tau: float = 1.0, aux_skip: float = 0.0) -> None:
        super().__init__()
        self.check_options(dict(locals()))
        self.op_names = op_choices("ops", ops)
        self.op_index = {name: i for i, name in enumerate(self.op_names)}
        self.in_channels, self.channels, self.cells_count, self.nodes = in_channels, channels, cells, nodes
        self.stem_multiplier, self.partial_channels = stem_multiplier, partial_channels
        self.weighting, self.tau = weighting, tau
        self.stem = stem(in_channels, channels * stem_multiplier)
        self.cells = nn.ModuleList()
        for c_pp, c_p, c, reduction, reduction_prev in cell_plan(cells, channels, stem_multiplier, nodes):
            self.cells.append(SearchCell(nodes, c_pp, c_p, c, reduction, reduction_prev, self.op_names,
                                         partial_channels, aux_skip > 0))
        self.out_channels = nodes * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        n_edges = edge_offset(nodes)
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.op_names)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.op_names)))
        # weight of the DARTS- auxiliary skip (0: off); search strategies decay it, and it is saved with the state
        self.aux_skip = aux_skip
        self.register_buffer("aux_beta", torch.tensor(float(aux_skip)))

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Sizes at least 1, ``partial_channels`` dividing ``channels``, the ops known (``op_choices``), and the
        weighting's settings; ``OptionError`` naming the option."""
        at_least(options, 1, "channels", "cells", "nodes", "stem_multiplier", "partial_channels")
        if options["channels"] % options["partial_channels"]:
            raise OptionError("partial_channels", f"{options['partial_channels']} must divide channels "
                                                  f"{options['channels']}; use a divisor of it (1: every channel)")
        op_choices("ops", options["ops"])
        one_of(options, "weighting", WEIGHTINGS)
        above_zero(options, "tau")
        at_least(options, 0, "aux_skip")

    # -- parameters -------------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("alpha_")]

    def arch_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        return op_weights(alpha, self.weighting, self.tau)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, path: DartsGenotype | None = None) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        if path is None:
            hard = self.weighting == "gumbel"
            w_normal, w_reduce = self.arch_weights(self.alpha_normal), self.arch_weights(self.alpha_reduce)
            beta = self.aux_beta if self.aux_skip > 0 else None
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal, hard, beta)
        else:
            self.check_path(path)
            for cell in self.cells:
                s0, s1 = s1, cell.forward_path(s0, s1, path.reduce if cell.reduction else path.normal, self.op_index)
        return self.pool(s1).flatten(1)

    # -- genotypes -------------------------------------------------------------------------------
    def _genotype(self, normal: CellGenotype, reduce: CellGenotype) -> DartsGenotype:
        return DartsGenotype(normal=normal, reduce=reduce, channels=self.channels, cells=self.cells_count,
                             stem_multiplier=self.stem_multiplier)

    def check_path(self, g: DartsGenotype) -> None:
        if not isinstance(g, DartsGenotype):
            raise ValueError(f"a {getattr(g, 'kind', type(g).__name__)} genotype is not an architecture of the darts "
                             f"space")
        if (g.channels, g.cells, g.stem_multiplier) != (self.channels, self.cells_count, self.stem_multiplier):
            raise ValueError("genotype size (channels, cells, stem_multiplier) = "
                             f"{(g.channels, g.cells, g.stem_multiplier)} differs from the supernet's "
                             f"{(self.channels, self.cells_count, self.stem_multiplier)}")
        for name, cell in (("normal", g.normal), ("reduce", g.reduce)):
            if len(cell.nodes) != self.nodes or cell.concat != tuple(range(2, self.nodes + 2)):
                raise ValueError(f"{name} cell must have {self.nodes} nodes, all concatenated, to run in this supernet")
            bad = [op for node in cell.nodes for op, _ in node if op not in self.op_index]
            if bad:
                raise ValueError(f"{name} cell uses op '{bad[0]}', which is not in this supernet's op set")

    def derive(self, k: int = 2) -> DartsGenotype:
        """Per node, the ``k`` strongest incoming edges, each with its strongest op other than 'none'."""
        cells = []
        for alpha in (self.alpha_normal, self.alpha_reduce):
            w = self.arch_weights(alpha.detach()) if self.weighting != "gumbel" else F.softmax(alpha.detach(), -1)
            nodes = []
            for i in range(self.nodes):
                off, choices = edge_offset(i), []
                for j in range(i + 2):
                    row = w[off + j].clone()
                    if "none" in self.op_index:
                        row[self.op_index["none"]] = -1.0
                    best = int(row.argmax())
                    choices.append((float(row[best]), self.op_names[best], j))
                top = sorted(choices, key=lambda t: -t[0])[: min(k, i + 2)]
                nodes.append(tuple((op, j) for _, op, j in sorted(top, key=lambda t: t[2])))
            cells.append(CellGenotype(tuple(nodes)))
        return self._genotype(*cells)

    def sample_path(self, generator: torch.Generator | None = None, k: int = 2) -> DartsGenotype:
        """A uniformly random genotype of this space: per node, k distinct inputs, each a random op (not 'none')."""
        ops = [o for o in self.op_names if o != "none"]
        cells = []
        for _ in range(2):
            nodes = []
            for i in range(self.nodes):
                srcs = sorted(torch.randperm(i + 2, generator=generator)[: min(k, i + 2)].tolist())
                nodes.append(tuple((ops[int(torch.randint(len(ops), (1,), generator=generator))], s) for s in srcs))
            cells.append(CellGenotype(tuple(nodes)))
        return self._genotype(*cells)

    # -- latency ---------------------------------------------------------------------------------
    def latency_plan(self, image_shape: tuple[int, int, int]) -> LatencyPlan:
        """Positions: every edge of every cell, in order; fixed: stem, each cell's preprocessing, pooling."""
        edges = [edge for cell in self.cells for edge in cell.edges]
        fixed = [("stem", self.stem)] + [(f"cell{k}.{n}", getattr(cell, n)) for k, cell in enumerate(self.cells)
                                         for n in ("pre0", "pre1")] + [("pool", self.pool)]
        shapes = input_shapes(self, [[m] for _, m in fixed] + [[e] for e in edges],
                              lambda: self(torch.zeros(1, *image_shape, device=self.alpha_normal.device)))
        fixed_shapes, edge_shapes = shapes[: len(fixed)], shapes[len(fixed):]
        positions = tuple(tuple(None if op == "none" else OpSlot(op, c, c, edge.stride, h, w)
                                for op in self.op_names) for edge, (c, h, w) in zip(edges, edge_shapes))
        return LatencyPlan(self.op_names, positions,
                           tuple(FixedPart(n, frozen_copy(m), s) for (n, m), s in zip(fixed, fixed_shapes)))

    def genotype_positions(self, genotype: DartsGenotype) -> list[tuple[int, int]]:
        """(position, op index) of every op the genotype runs, positions as in ``latency_plan``."""
        self.check_path(genotype)
        n_edges, out = edge_offset(self.nodes), []
        for k, cell in enumerate(self.cells):
            g = genotype.reduce if cell.reduction else genotype.normal
            out += [(k * n_edges + edge_offset(i) + src, self.op_index[op])
                    for i, node in enumerate(g.nodes) for op, src in node]
        return out

    def position_weights(self, k: int = 2) -> torch.Tensor:
        """[positions, ops]: the expected use of each op at each position, differentiable in alpha: the op
        weights of the edge times the share of a node's edges a derived genotype keeps (k of them)."""
        keep = torch.tensor([min(k, i + 2) / (i + 2) for i in range(self.nodes) for _ in range(i + 2)],
                            device=self.alpha_normal.device).unsqueeze(1)
        rows = []
        for cell in self.cells:
            alpha = self.alpha_reduce if cell.reduction else self.alpha_normal
            w = F.softmax(alpha, -1) if self.weighting == "gumbel" else self.arch_weights(alpha)
            rows.append(w * keep)
        return torch.cat(rows)

    def subnet(self, genotype: DartsGenotype) -> DartsNetwork:
        """The stand-alone network of ``genotype`` with this supernet's weights (and BN statistics)."""
        if self.partial_channels != 1:
            raise ValueError("a partial-channel supernet has no single-op weights to inherit; search with "
                             "partial_channels=1 to take subnets")
        self.check_path(genotype)
        net = DartsNetwork(genotype, self.in_channels, affine=False)
        net.stem = copy.deepcopy(self.stem)
        for fixed, searched in zip(net.cells, self.cells):
            fixed.pre0, fixed.pre1 = copy.deepcopy(searched.pre0), copy.deepcopy(searched.pre1)
            cell = genotype.reduce if searched.reduction else genotype.normal
            ops = [copy.deepcopy(searched.edges[edge_offset(i) + src].ops[self.op_index[op]])
                   for i, node in enumerate(cell.nodes) for op, src in node]
            fixed.ops = nn.ModuleList(ops)
        return net.train(self.training)
