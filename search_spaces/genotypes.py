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

import dataclasses
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

import yaml

from fsnas_core.options import OptionError, run_checks

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
        params = {k: p for k, p in inspect.signature(MODELS[self.model]).parameters.items() if k != "in_channels"}
        unknown = [k for k, _ in self.options if k not in params]
        if unknown:
            raise GenotypeError(f"options.{unknown[0]}: unknown option of model {self.model}; its options are "
                                f"{', '.join(params)}")
        try:
            run_checks(MODELS[self.model], {**{k: p.default for k, p in params.items() if p.default is not p.empty},
                                            **dict(self.options)})
        except OptionError as exc:
            raise GenotypeError(f"options.{exc.option}: {exc.message}") from None
        except TypeError as exc:  # a value of another type than the check compares
            raise GenotypeError(f"options of model {self.model}: {exc}") from None

    def to_dict(self) -> dict:
        return {"space": self.kind, "model": self.model,
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}}


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def genotype_from_dict(data: dict) -> Genotype:
    """A genotype from plain data (a file's YAML or JSON): every field is checked against its annotation, so any
    malformed input raises ``GenotypeError`` naming its place (``normal.nodes[0][1][1]``), never a TypeError."""
    if not isinstance(data, dict) or not isinstance(data.get("space"), str) or data["space"] not in GENOTYPES:
        raise GenotypeError(f"not a genotype: needs 'space' set to one of {', '.join(GENOTYPES)}")
    return _read(GENOTYPES[data["space"]], {k: v for k, v in data.items() if k != "space"}, "")


def _read(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp``: a genotype dataclass from a mapping, a tuple from a list (a tuple of pairs from
    a mapping too), ints and strings as they are."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _read_fields(tp, value, where)
    if origin is tuple:
        repeated = len(args) == 2 and args[1] is Ellipsis
        if isinstance(value, dict) and repeated and get_origin(args[0]) is tuple:
            value = list(value.items())
        if not isinstance(value, (list, tuple)):
            raise GenotypeError(f"{where}: expected a list, got {value!r}")
        if repeated:
            return tuple(_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise GenotypeError(f"{where}: expected a list of {len(args)} "
                                f"[{', '.join(a.__name__ for a in args)}], got {value!r}")
        return tuple(_read(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise GenotypeError(f"{where}: expected an integer, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise GenotypeError(f"{where}: expected a name (a string), got {value!r}")
    return value


def _read_fields(cls: type, value: Any, where: str) -> Any:
    if isinstance(value, cls):
        return value
    what = where or f"a {cls.kind} genotype"
    if not isinstance(value, dict):
        raise GenotypeError(f"{what}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
                            f"got {value!r}")
    hints, fields = get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in value:
        if key not in fields:
            raise GenotypeError(f"{prefix}{key}: unknown key; the keys of {what} are {', '.join(fields)}")
    for name, f in fields.items():
        if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise GenotypeError(f"{prefix}{name}: missing (the keys of {what} are {', '.join(fields)})")
    return cls(**{k: _read(hints[k], v, prefix + k) for k, v in value.items()})


def genotype_from_yaml(text: str) -> Genotype:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise GenotypeError(f"not YAML ({at}{getattr(exc, 'problem', None) or exc})") from None
    return genotype_from_dict(data)


def genotype_from_json(text: str) -> Genotype:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenotypeError(f"not JSON: {exc}") from None
    return genotype_from_dict(data)


def load_genotype(path: str | Path) -> Genotype:
    path = Path(path)
    text = path.read_text()
    return genotype_from_json(text) if path.suffix == ".json" else genotype_from_yaml(text)
