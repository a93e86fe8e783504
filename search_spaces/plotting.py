"""Genotypes as networkx graphs and PNG drawings (matplotlib; no system graphviz needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from .registry import GRAPHS


@dataclass(frozen=True)
class Part:
    """One drawing of a genotype: a DARTS cell, or a whole network."""
    name: str
    title: str
    graph: nx.DiGraph


def cell_graph(cell) -> nx.DiGraph:
    """A DARTS cell: its two inputs, intermediate nodes and the concatenated output c_{k}."""
    g = nx.DiGraph()
    names = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(len(cell.nodes))}}
    for i, node in enumerate(cell.nodes):
        for op, src in node:
            g.add_edge(names[src], names[i + 2], op=op)
    for c in cell.concat:
        g.add_edge(names[c], "c_{k}", op="concat")
    return g


@GRAPHS.register("darts")
def darts_parts(genotype) -> list[Part]:
    return [Part(name, f"{name} cell", cell_graph(getattr(genotype, name))) for name in ("normal", "reduce")]


@GRAPHS.register("blocks")
def block_parts(genotype) -> list[Part]:
    """The layer chain from the stem."""
    g = nx.DiGraph()
    prev = "stem"
    g.add_node(prev)
    for s, stage in enumerate(genotype.stages):
        for l, op in enumerate(stage.ops):
            name = f"s{s}.l{l}"
            g.add_edge(prev, name, op=op)
            prev = name
    return [Part("network", genotype.kind, g)]


@GRAPHS.register("fixed")
def fixed_parts(genotype) -> list[Part]:
    g = nx.DiGraph()
    g.add_node(genotype.model, **dict(genotype.options))
    return [Part("network", genotype.kind, g)]


def genotype_parts(genotype) -> list[Part]:
    kind = getattr(genotype, "kind", None)
    if kind not in GRAPHS:
        raise TypeError(f"not a genotype: {type(genotype).__name__}")
    return GRAPHS[kind](genotype)


def genotype_graph(genotype) -> nx.DiGraph:
    """One graph of the whole genotype; with several parts (DARTS cells) nodes are prefixed '<part>/'."""
    parts = genotype_parts(genotype)
    if len(parts) == 1:
        return parts[0].graph
    return nx.compose_all([nx.relabel_nodes(p.graph, lambda n, p=p: f"{p.name}/{n}") for p in parts])


def _draw(graph: nx.DiGraph, title: str, path: Path, pos: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(graph)), 4.5))
    nx.draw_networkx(graph, pos, ax=ax, node_color="#cfe2f3", node_size=1400, font_size=8, arrowsize=12)
    nx.draw_networkx_edge_labels(graph, pos, nx.get_edge_attributes(graph, "op"), ax=ax, font_size=7)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _layered(graph: nx.DiGraph) -> dict:
    """Left-to-right layout by longest path from the inputs (a DAG)."""
    depth: dict = {}
    for n in nx.topological_sort(graph):
        preds = list(graph.predecessors(n))
        depth[n] = 1 + max(depth[p] for p in preds) if preds else 0
    rows: dict[int, int] = {}
    pos = {}
    for n in graph:
        r = rows.get(depth[n], 0)
        rows[depth[n]] = r + 1
        pos[n] = (depth[n], -r - 0.3 * (depth[n] % 2))
    return pos


def plot_genotype(genotype, path: Path) -> list[Path]:
    """PNGs of a genotype: ``<path>`` for a one-part genotype, ``<stem>_<part>.png`` each for several (DARTS:
    ``_normal`` and ``_reduce``)."""
    path = Path(path).with_suffix(".png")
    parts = genotype_parts(genotype)
    if len(parts) == 1:
        return [_draw(parts[0].graph, parts[0].title, path, _layered(parts[0].graph))]
    return [_draw(p.graph, p.title, path.with_name(f"{path.stem}_{p.name}.png"), _layered(p.graph)) for p in parts]
