"""The elastic supernet: every path of the space in one set of sliced weights (``dynamic``), trained one path
at a time (``forward(x, path=genotype)``) and cut out as a stand-alone network with inherited weights
(``subnet(genotype)``).  It has no architecture parameters: paths are drawn (``sample_path``, and the
largest / smallest paths of the sandwich rule), not mixed, so it serves single-path strategies.

Per stage, block position j holds one dynamic plain block and one dynamic residual block (each at the
stage's widest width and largest kernel); a path's stage runs the first ``depth`` blocks of its type."""

from __future__ import annotations

from typing import Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fsnas_core.options import OptionError

from ..latency_plan import LatencyPlan
from ..registry import SPACES
from .dynamic import DynamicBatchNorm2d, DynamicConv2d
from .latency import elastic_plan, genotype_slots
from .genotype import BLOCKS, DOWNSAMPLING, HEADS, MAX_CONVS, ElasticGenotype, ElasticStage
from .network import ElasticNetwork, ResidualBlock, pool_ceil

CPU_WIDTHS = (32, 48, 64, 96)
# the space's dimensions, named as its options; the ordered ones have a largest and a smallest value
DIMENSIONS = ("stages", "widths", "depths", "kernels", "blocks", "convs", "downsampling", "heads")
ORDERED = frozenset({"stages", "widths", "depths", "kernels", "convs"})


class DynamicPlain(nn.Module):
    def __init__(self, max_in: int, max_out: int, kernels: Sequence[int], transform: bool) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, kernels, bias=True, transform=transform)
        self.bn = DynamicBatchNorm2d(max_out)

    def forward(self, x: torch.Tensor, stage: ElasticStage, stride: int) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x, stage.width, stage.kernel, stride)))

    def export_to(self, block) -> None:
        self.conv.export_to(block.conv)
        self.bn.export_to(block.bn)


class DynamicResidual(nn.Module):
    def __init__(self, max_in: int, max_out: int, kernels: Sequence[int], convs: int, project: bool,
                 transform: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(DynamicConv2d(max_in if i == 0 else max_out, max_out, kernels, transform=transform)
                                   for i in range(convs))
        self.bns = nn.ModuleList(DynamicBatchNorm2d(max_out) for _ in range(convs))
        self.project = project
        if project:
            self.shortcut_conv = DynamicConv2d(max_in, max_out, (1,))
            self.shortcut_bn = DynamicBatchNorm2d(max_out)

    def forward(self, x: torch.Tensor, stage: ElasticStage, stride: int) -> torch.Tensor:
        y = x
        for i in range(stage.convs):
            y = self.bns[i](self.convs[i](y, stage.width, stage.kernel, stride if i == 0 else 1))
            if i < stage.convs - 1:
                y = F.leaky_relu(y, 0.1)
        short = self.shortcut_bn(self.shortcut_conv(x, stage.width, 1, stride)) if self.project else x
        return F.leaky_relu(y + short, 0.1)

    def export_to(self, block: ResidualBlock) -> None:
        convs = [m for m in block.body if isinstance(m, nn.Conv2d)]
        bns = [m for m in block.body if isinstance(m, nn.BatchNorm2d)]
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            self.convs[i].export_to(conv)
            self.bns[i].export_to(bn)
        if self.project:
            self.shortcut_conv.export_to(block.shortcut[0])
            self.shortcut_bn.export_to(block.shortcut[1])


def _per_stage(widths, stages: int) -> tuple[tuple[int, ...], ...]:
    """``widths``: one list for every stage, or one list per stage."""
    if widths and all(isinstance(w, (list, tuple)) for w in widths):
        if len(widths) != stages:
            raise ValueError(f"widths: give one list for every stage, or one list per stage ({stages}), got "
                             f"{len(widths)} lists")
        return tuple(tuple(sorted(int(v) for v in w)) for w in widths)
    return (tuple(sorted(int(v) for v in widths)),) * stages


@SPACES.register("elastic")
class ElasticSupernet(nn.Module):
    differentiable = False  # no architecture parameters to train: single-path strategies only
    dimensions = DIMENSIONS  # what progressive shrinking opens phase by phase (sample_path's ``open``)

    def __init__(self, in_channels: int = 3, stages: Sequence[int] = (3, 4),
                 widths: Sequence[int] | Sequence[Sequence[int]] = CPU_WIDTHS, depths: Sequence[int] = (1, 2),
                 kernels: Sequence[int] = (3, 5), blocks: Sequence[str] = BLOCKS, convs: Sequence[int] = (1, 2),
                 downsampling: Sequence[str] = ("maxpool", "stride"), heads: Sequence[str] = HEADS,
                 kernel_transform: bool = False) -> None:
        super().__init__()
        self.check_options(dict(locals()))
        self.in_channels = in_channels
        self.stage_counts = tuple(sorted(set(int(n) for n in stages)))
        n_max = self.stage_counts[-1]
        self.widths = _per_stage(widths, n_max)
        self.depths, self.kernels = tuple(sorted(set(depths))), tuple(sorted(set(kernels)))
        self.blocks, self.convs = tuple(blocks), tuple(sorted(set(convs)))
        self.downsampling, self.heads = tuple(downsampling), tuple(heads)
        self.stage_blocks = nn.ModuleList()
        c_in = in_channels
        for widths_i in self.widths:
            top = widths_i[-1]
            positions = nn.ModuleList()
            for j in range(self.depths[-1]):
                here = c_in if j == 0 else top
                pair = nn.ModuleDict()
                if "plain" in self.blocks:
                    pair["plain"] = DynamicPlain(here, top, self.kernels, kernel_transform)
                if "residual" in self.blocks:
                    pair["residual"] = DynamicResidual(here, top, self.kernels, self.convs[-1], j == 0,
                                                       kernel_transform)
                positions.append(pair)
            self.stage_blocks.append(positions)
            c_in = top
        self._planned: tuple | None = None  # (image shape, slot key -> position) of the last latency plan
        self.choices = tuple(sorted({ElasticStage(b, 1, 1, k, convs=c if b == "residual" else 1).op
                                     for b in self.blocks for k in self.kernels for c in self.convs}))

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Known block types, downsampling and heads; odd kernels; 1-3 convs; positive depths, widths and
        stage counts; per-stage widths for every stage; no empty choice list."""
        for name in ("stages", "widths", "depths", "kernels", "blocks", "convs", "downsampling", "heads"):
            if not options[name]:
                raise OptionError(name, "give at least one choice")
        for name, known in (("blocks", BLOCKS), ("downsampling", DOWNSAMPLING), ("heads", HEADS)):
            bad = [v for v in options[name] if v not in known]
            if bad:
                raise OptionError(name, f"'{bad[0]}' is not a choice; use some of {', '.join(known)}")
        for name, low in (("stages", 1), ("depths", 1), ("kernels", 1), ("convs", 1)):
            if min(options[name]) < low:
                raise OptionError(name, f"every choice must be at least {low}, got {list(options[name])}")
        if any(k % 2 == 0 for k in options["kernels"]):
            raise OptionError("kernels", f"kernels must be odd (same padding), got {list(options['kernels'])}")
        if max(options["convs"]) > MAX_CONVS:
            raise OptionError("convs", f"a residual block has 1-{MAX_CONVS} convs, got {list(options['convs'])}")
        try:
            widths = _per_stage(options["widths"], max(options["stages"]))
        except ValueError as exc:
            raise OptionError("widths", str(exc).partition(": ")[2]) from None
        if any(not w or min(w) < 1 for w in widths):
            raise OptionError("widths", f"every width must be at least 1, got {options['widths']}")

    def arch_parameters(self) -> list[nn.Parameter]:
        return []

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    # -- paths -------------------------------------------------------------------------------------
    def check_path(self, g: ElasticGenotype) -> None:
        if not isinstance(g, ElasticGenotype):
            raise ValueError(f"the elastic space runs elastic genotypes, not {type(g).__name__}")
        if len(g.stages) not in self.stage_counts:
            raise ValueError(f"{len(g.stages)} stages: this supernet has {self.stage_counts}")
        if g.head not in self.heads:
            raise ValueError(f"head '{g.head}' is not a choice of this supernet ({self.heads})")
        for i, s in enumerate(g.stages):
            for name, value, allowed in (("block", s.block, self.blocks), ("depth", s.depth, self.depths),
                                         ("width", s.width, self.widths[i]), ("kernel", s.kernel, self.kernels),
                                         ("down", s.down, self.downsampling)):
                if value not in allowed:
                    raise ValueError(f"stage {i}: {name} {value!r} is not a choice of this supernet ({allowed})")
            if s.block == "residual" and s.convs not in self.convs:
                raise ValueError(f"stage {i}: convs {s.convs} is not a choice of this supernet ({self.convs})")

    def forward(self, x: torch.Tensor, path: ElasticGenotype | None = None) -> torch.Tensor:
        if path is None:
            raise ValueError("the elastic supernet runs one path at a time: call it with path=genotype")
        self.check_path(path)
        for stage, positions in zip(path.stages, self.stage_blocks):
            for j in range(stage.depth):
                x = positions[j][stage.block](x, stage, 2 if j == 0 and stage.down == "stride" else 1)
            if stage.down == "maxpool":
                x = F.max_pool2d(x, 2, ceil_mode=pool_ceil(stage.block))
        return x.flatten(1) if path.head == "flatten" else F.adaptive_avg_pool2d(x, 1).flatten(1)

    def _pick(self, options: Sequence, generator: torch.Generator | None):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def _choose(self, dim: str, options: Sequence, generator: torch.Generator | None, open: Collection[str] | None,
                end: int | None = None):
        """One choice of dimension ``dim``: its anchor when the dimension is closed (``open`` given and without
        it: the largest of an ordered dimension, the first listed of an unordered one), else ``options[end]``
        for an ordered dimension when ``end`` is given, else drawn."""
        if open is not None and dim not in open:
            return options[-1] if dim in ORDERED else options[0]
        if end is not None and dim in ORDERED:
            return options[end]
        return self._pick(options, generator)

    def _path(self, generator: torch.Generator | None, open: Collection[str] | None,
              end: int | None) -> ElasticGenotype:
        stages = []
        for i in range(self._choose("stages", self.stage_counts, generator, open, end)):
            block = self._choose("blocks", self.blocks, generator, open)
            depth = self._choose("depths", self.depths, generator, open, end)
            width = self._choose("widths", self.widths[i], generator, open, end)
            kernel = self._choose("kernels", self.kernels, generator, open, end)
            down = self._choose("downsampling", self.downsampling, generator, open)
            convs = self._choose("convs", self.convs, generator, open, end)
            stages.append(ElasticStage(block, depth, width, kernel, down, convs if block == "residual" else 1))
        return ElasticGenotype(stages=tuple(stages), head=self._choose("heads", self.heads, generator, open))

    def sample_path(self, generator: torch.Generator | None = None,
                    open: Collection[str] | None = None) -> ElasticGenotype:
        """Every choice uniformly, in a fixed order (so a seeded generator reproduces the path).  ``open``: only
        these dimensions (names of ``dimensions``) are drawn, the others stay at their anchor (progressive
        shrinking): the largest value of an ordered dimension, the first listed choice of block, downsampling
        and head."""
        return self._path(generator, open, None)

    def extreme_path(self, largest: bool, generator: torch.Generator | None = None,
                     open: Collection[str] | None = None) -> ElasticGenotype:
        """The sandwich rule's largest (smallest) path: the most (fewest) stages, and the largest (smallest)
        depth, width, kernel and convs of each; block type, downsampling and head, which have no order, drawn.
        With ``open``, closed dimensions stay at their anchor, as in ``sample_path``."""
        return self._path(generator, open, -1 if largest else 0)

    # -- latency ---------------------------------------------------------------------------------
    def latency_plan(self, image_shape: tuple[int, int, int]) -> LatencyPlan:
        """Every slot (block, pooling, head at an input shape) a path can run (``elastic.latency``); the
        positions ``genotype_positions`` names afterwards are this plan's."""
        plan = elastic_plan(self, image_shape)
        self._planned = (tuple(image_shape), {row[o].key: (p, o) for p, row in enumerate(plan.positions)
                                              for o in range(len(plan.ops)) if row[o] is not None})
        return plan

    def genotype_positions(self, genotype: ElasticGenotype) -> list[tuple[int, int]]:
        """(position, op index) of every slot ``genotype`` runs, in the last ``latency_plan``."""
        if self._planned is None:
            raise RuntimeError("call latency_plan(image_shape) before genotype_positions")
        self.check_path(genotype)
        shape, index = self._planned
        return [index[s.key] for s in genotype_slots(genotype, shape)]

    def subnet(self, genotype: ElasticGenotype) -> ElasticNetwork:
        """The stand-alone network of ``genotype`` with the weights (and BN statistics) it uses here."""
        self.check_path(genotype)
        net = ElasticNetwork(genotype, self.in_channels).to(next(self.parameters()).device)
        for stage, positions, module in zip(genotype.stages, self.stage_blocks, net.stages):
            for j, block in enumerate(module.blocks):
                positions[j][stage.block].export_to(block)
        return net.train(self.training)
