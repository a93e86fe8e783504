"""Genotypes as networkx graphs and PNG drawings (matplotlib; no system graphviz needed)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from .genotypes import BlockGenotype, CellGenotype, DartsGenotype, FixedGenotype, Genotype


def cell_graph(cell: CellGenotype, prefix: str = "") -> nx.DiGraph:
    g = nx.DiGraph()
    names = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(len(cell.nodes))}}
    for i, node in enumerate(cell.nodes):
        for op, src in node:
            g.add_edge(prefix + names[src], prefix + names[i + 2], op=op)
    for c in cell.concat:
        g.add_edge(prefix + names[c], prefix + "c_{k}", op="concat")
    return g


def genotype_graph(genotype: Genotype) -> nx.DiGraph:
    """DARTS: both cells (nodes prefixed 'normal/' and 'reduce/'); blocks: the layer chain; fixed: one node."""
    if isinstance(genotype, DartsGenotype):
        return nx.compose(cell_graph(genotype.normal, "normal/"), cell_graph(genotype.reduce, "reduce/"))
    g = nx.DiGraph()
    if isinstance(genotype, BlockGenotype):
        prev = "stem"
        g.add_node(prev)
        for s, stage in enumerate(genotype.stages):
            for l, op in enumerate(stage.ops):
                name = f"s{s}.l{l}"
                g.add_edge(prev, name, op=op)
                prev = name
        return g
    if isinstance(genotype, FixedGenotype):
        g.add_node(genotype.model, **dict(genotype.options))
        return g
    raise TypeError(f"not a genotype: {type(genotype).__name__}")


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


def plot_genotype(genotype: Genotype, path: Path) -> list[Path]:
    """PNGs of a genotype: ``<stem>_normal.png`` and ``<stem>_reduce.png`` for DARTS, else ``<path>``."""
    path = Path(path).with_suffix(".png")
    if isinstance(genotype, DartsGenotype):
        out = []
        for name in ("normal", "reduce"):
            g = cell_graph(getattr(genotype, name))
            out.append(_draw(g, f"{name} cell", path.with_name(f"{path.stem}_{name}.png"), _layered(g)))
        return out
    g = genotype_graph(genotype)
    return [_draw(g, genotype.kind, path, _layered(g))]
