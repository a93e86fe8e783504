"""The elastic space's genotype: a chain of conv stages, each with its block type, depth, width, kernel and
downsampling, and a head; Conv-4 and ResNet-12 are single points of it (``configs/genotypes/``).

A stage is ``depth`` blocks of one type, ``width`` output channels each:

- ``plain``: conv (with bias, as Conv-4's) - BatchNorm - ReLU;
- ``residual``: ``convs`` convs (1-3; ResNet-12: 3) with BatchNorm and LeakyReLU(0.1) between them, added to a
  shortcut (a 1x1 conv + BatchNorm in a stage's first block, the identity after), then LeakyReLU(0.1).

``down`` says how the stage halves the resolution: ``maxpool`` (2x2 after its last block; rounding down after
plain stages as Conv-4, up after residual ones as ResNet-12), ``stride`` (stride 2 in its first conv) or
``none``.  ``head``: ``flatten`` the last feature map (Conv-4) or ``avgpool`` it to one vector (ResNet-12)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import networkx as nx

from ..genotypes import Genotype, GenotypeError, registered
from ..plotting import Part
from ..registry import CROSSOVERS, GRAPHS

BLOCKS = ("plain", "residual")
DOWNSAMPLING = ("maxpool", "stride", "none")
HEADS = ("flatten", "avgpool")
MAX_CONVS = 3


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenotypeError(f"{where}: expected an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ElasticStage:
    block: str
    depth: int
    width: int
    kernel: int = 3
    down: str = "maxpool"
    convs: int = 1

    def check(self, where: str) -> None:
        for name in ("depth", "width", "kernel", "convs"):
            _int(getattr(self, name), f"{where}.{name}")
        if self.block not in BLOCKS:
            raise GenotypeError(f"{where}.block: '{self.block}' is not a block type; use {' or '.join(BLOCKS)}")
        if self.down not in DOWNSAMPLING:
            raise GenotypeError(f"{where}.down: '{self.down}'; use one of {', '.join(DOWNSAMPLING)}")
        if self.depth < 1 or self.width < 1:
            raise GenotypeError(f"{where}: depth and width must be at least 1")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise GenotypeError(f"{where}.kernel: must be odd (1, 3, 5, 7), got {self.kernel}")
        top = MAX_CONVS if self.block == "residual" else 1
        if not 1 <= self.convs <= top:
            raise GenotypeError(f"{where}.convs: a {self.block} block has 1{f'-{top}' if top > 1 else ''} convs, "
                                f"got {self.convs}")

    @property
    def op(self) -> str:
        """The block's name in latency tables and op counts, e.g. ``residual3_k3``."""
        return f"{self.block}{self.convs if self.block == 'residual' else ''}_k{self.kernel}"


@registered
@dataclass(frozen=True)
class ElasticGenotype(Genotype):
    kind: ClassVar[str] = "elastic"
    stages: tuple[ElasticStage, ...]
    head: str = "flatten"

    def __post_init__(self) -> None:
        if not isinstance(self.stages, (list, tuple)) or not self.stages:
            raise GenotypeError("an elastic genotype needs a non-empty list of stages")
        stages = []
        for i, s in enumerate(self.stages):
            if isinstance(s, dict):
                try:
                    s = ElasticStage(**s)
                except TypeError as exc:
                    raise GenotypeError(f"stage {i}: {exc}") from None
            if not isinstance(s, ElasticStage):
                raise GenotypeError(f"stage {i}: give block, depth, width, kernel, down, convs")
            s.check(f"stage {i}")
            stages.append(s)
        object.__setattr__(self, "stages", tuple(stages))
        if self.head not in HEADS:
            raise GenotypeError(f"head: '{self.head}'; use {' or '.join(HEADS)}")

    def to_dict(self) -> dict:
        return {"space": self.kind, "head": self.head,
                "stages": [{"block": s.block, "depth": s.depth, "width": s.width, "kernel": s.kernel,
                            "down": s.down, "convs": s.convs} for s in self.stages]}


@GRAPHS.register("elastic")
def elastic_parts(genotype: ElasticGenotype) -> list[Part]:
    """The block chain from the input, each edge the block's type and kernel, each node its width."""
    g = nx.DiGraph()
    prev = "input"
    g.add_node(prev)
    for i, stage in enumerate(genotype.stages):
        for j in range(stage.depth):
            name = f"s{i}.b{j}:{stage.width}"
            g.add_edge(prev, name, op=stage.op + ("/2" if j == 0 and stage.down != "none" else ""))
            prev = name
    g.add_edge(prev, genotype.head, op=genotype.head)
    return [Part("network", genotype.kind, g)]


@CROSSOVERS.register("elastic")
def elastic_stages(a: ElasticGenotype, b: ElasticGenotype, take_b: Callable[[], bool]) -> ElasticGenotype:
    """The number of stages, then stage after stage (whole stages, so each stays one of its choices), then the
    head."""
    n = len(b.stages) if take_b() else len(a.stages)
    stages = []
    for i in range(n):
        pick_b = take_b()
        if i >= len(a.stages) or (pick_b and i < len(b.stages)):
            stages.append(b.stages[i])
        else:
            stages.append(a.stages[i])
    return ElasticGenotype(stages=tuple(stages), head=b.head if take_b() else a.head)
