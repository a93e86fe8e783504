"""Genotypes: the architecture a search returns, typed, validated, hashable, YAML/JSON round-trippable.

Three kinds, one per space family:

- ``DartsGenotype``: a normal and a reduction cell, each a list of intermediate nodes whose inputs are
  (op, input) pairs (input 0 = the cell before last, 1 = the last cell, 2.. = earlier nodes), plus the
  network size (channels, cells, stem multiplier), so the file alone builds the backbone.
- ``BlockGenotype``: stages of MBConv-style choices (ProxylessNAS / FBNet), one op name per layer.
- ``FixedGenotype``: a hand-designed backbone (Conv-4, ResNet-12) by name, so baselines take the same
  build, export and retrain paths as searched architectures.

Each is frozen (hashable, comparable) and checked on construction; a bad one raises ``GenotypeError``
naming the cell, node, edge or op at fault.  Genotypes are data: what is built, drawn or counted from them
lives in the free functions of ``build``, ``plotting`` and ``counting``, registered per kind (``registry``),
which the methods below only call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .counting import count
from .plotting import genotype_graph, plot_genotype
from .registry import GENOTYPES, MODELS, OPS


class GenotypeError(ValueError):
    pass


def _check_op(op: str, where: str) -> None:
    if op not in OPS:
        raise GenotypeError(f"{where}: unknown op '{op}'")


@dataclass(frozen=True)
class CellGenotype:
    nodes: tuple[tuple[tuple[str, int], ...], ...]  # per node: its incoming (op, input) edges
    concat: tuple[int, ...] = ()  # states concatenated as output; default: every intermediate node

    def __post_init__(self) -> None:
        nodes = tuple(tuple((str(op), int(i)) for op, i in node) for node in self.nodes)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "concat", tuple(int(c) for c in self.concat) or tuple(range(2, len(nodes) + 2)))

    def check(self, name: str) -> None:
        if not self.nodes:
            raise GenotypeError(f"{name} cell: no nodes")
        for n, node in enumerate(self.nodes):
            if not node:
                raise GenotypeError(f"{name} cell, node {n + 2}: no incoming edge")
            for op, src in node:
                where = f"{name} cell, node {n + 2}, edge from {src}"
                _check_op(op, where)
                if op == "none":
                    raise GenotypeError(f"{where}: op 'none' cannot be kept in a genotype")
                if not 0 <= src < n + 2:
                    raise GenotypeError(f"{where}: input {src} does not exist (node {n + 2} takes 0..{n + 1})")
            srcs = [s for _, s in node]
            if len(set(srcs)) != len(srcs):
                raise GenotypeError(f"{name} cell, node {n + 2}: input used twice ({srcs})")
        for c in self.concat:
            if not 0 <= c < len(self.nodes) + 2:
                raise GenotypeError(f"{name} cell: concat names state {c}, which does not exist")

    def to_dict(self) -> dict:
        return {"nodes": [[[op, src] for op, src in node] for node in self.nodes], "concat": list(self.concat)}


class Genotype:
    """Shared behaviour: serialisation, graph, plot, size.  Subclasses define ``kind`` and the fields."""

    kind: ClassVar[str]

    def to_dict(self) -> dict:
        raise NotImplementedError

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.write_text(self.to_json() if path.suffix == ".json" else self.to_yaml())

    def graph(self):
        return genotype_graph(self)

    def plot(self, path: str | Path) -> list[Path]:
        return plot_genotype(self, Path(path))

    def params(self, input_size: tuple[int, int, int]) -> int:
        return count(self, input_size)[0]

    def macs(self, input_size: tuple[int, int, int]) -> int:
        return count(self, input_size)[1]


def registered(cls: type) -> type:
    """Class decorator: the genotype class under its ``kind`` in ``GENOTYPES`` (what ``space:`` names in a file)."""
    GENOTYPES.register(cls.kind, cls)
    return cls


def reduction_cells(cells: int) -> tuple[int, ...]:
    """Cells that halve the resolution: at 1/3 and 2/3 of the depth, as in DARTS (the last one if fewer than 3)."""
    return tuple(sorted({cells // 3, 2 * cells // 3})) if cells >= 3 else (cells - 1,)


@registered
@dataclass(frozen=True)
class DartsGenotype(Genotype):
    kind: ClassVar[str] = "darts"
    normal: CellGenotype
    reduce: CellGenotype
    channels: int = 16
    cells: int = 5
    stem_multiplier: int = 3

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            cell = getattr(self, name)
            if isinstance(cell, dict):
                cell = CellGenotype(**cell)
                object.__setattr__(self, name, cell)
            cell.check(name)
        if len(self.normal.nodes) != len(self.reduce.nodes):
            raise GenotypeError("normal and reduce cells must have the same number of nodes")
        for key, least in (("channels", 1), ("cells", 1), ("stem_multiplier", 1)):
            if int(getattr(self, key)) < least:
                raise GenotypeError(f"{key} must be at least {least}, got {getattr(self, key)}")

    def reduction_cells(self) -> tuple[int, ...]:
        return reduction_cells(self.cells)

    def to_dict(self) -> dict:
        return {"space": self.kind, "channels": self.channels, "cells": self.cells,
                "stem_multiplier": self.stem_multiplier, "normal": self.normal.to_dict(),
                "reduce": self.reduce.to_dict()}


@dataclass(frozen=True)
class Stage:
    channels: int
    stride: int
    ops: tuple[str, ...]  # one choice per layer; 'skip_connect' drops the layer

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(str(o) for o in self.ops))


@registered
@dataclass(frozen=True)
class BlockGenotype(Genotype):
    kind: ClassVar[str] = "blocks"
    stages: tuple[Stage, ...]
    stem_channels: int = 16

    def __post_init__(self) -> None:
        stages = tuple(Stage(**s) if isinstance(s, dict) else s for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise GenotypeError("a block genotype needs at least one stage")
        for i, st in enumerate(stages):
            if st.stride not in (1, 2) or st.channels < 1 or not st.ops:
                raise GenotypeError(f"stage {i}: needs channels >= 1, stride 1 or 2 and at least one layer")
            for j, op in enumerate(st.ops):
                _check_op(op, f"stage {i}, layer {j}")
                if op == "none":
                    raise GenotypeError(f"stage {i}, layer {j}: 'none' is not a block choice; use skip_connect")
            if st.ops[0] == "skip_connect":
                raise GenotypeError(f"stage {i}, layer 0: the first layer of a stage changes shape and cannot be "
                                    f"skip_connect")

    def to_dict(self) -> dict:
        return {"space": self.kind, "stem_channels": self.stem_channels,
                "stages": [{"channels": s.channels, "stride": s.stride, "ops": list(s.ops)} for s in self.stages]}


@registered
@dataclass(frozen=True)
class FixedGenotype(Genotype):
    kind: ClassVar[str] = "fixed"
    model: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        opts = self.options.items() if isinstance(self.options, dict) else self.options
        object.__setattr__(self, "options", tuple(sorted((str(k), _freeze(v)) for k, v in opts)))
        if self.model not in MODELS:
            raise GenotypeError(f"unknown fixed model '{self.model}'; known: {', '.join(sorted(MODELS))}")

    def to_dict(self) -> dict:
        return {"space": self.kind, "model": self.model,
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}}


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def genotype_from_dict(data: dict) -> Genotype:
    if not isinstance(data, dict) or data.get("space") not in GENOTYPES:
        raise GenotypeError(f"not a genotype: needs 'space' set to one of {', '.join(GENOTYPES)}")
    fields = {k: v for k, v in data.items() if k != "space"}
    try:
        return GENOTYPES[data["space"]](**fields)
    except TypeError as exc:
        raise GenotypeError(f"{data['space']} genotype: {exc}") from None


def genotype_from_yaml(text: str) -> Genotype:
    return genotype_from_dict(yaml.safe_load(text))


def genotype_from_json(text: str) -> Genotype:
    return genotype_from_dict(json.loads(text))


def load_genotype(path: str | Path) -> Genotype:
    path = Path(path)
    text = path.read_text()
    return genotype_from_json(text) if path.suffix == ".json" else genotype_from_yaml(text)
