import json

import networkx as nx
import pytest
import torch

from search_spaces import (BlockGenotype, CellGenotype, DartsGenotype, FixedGenotype, GenotypeError,
                           Stage, build_network, create_model, genotype_from_dict, genotype_from_json,
                           genotype_from_yaml, load_genotype)

CELL = CellGenotype((( ("sep_conv_3x3", 0), ("skip_connect", 1)), (("dil_conv_3x3", 0), ("max_pool_3x3", 2))))
DARTS = DartsGenotype(normal=CELL, reduce=CELL, channels=8, cells=3)
BLOCKS = BlockGenotype(stages=(Stage(16, 2, ("mbconv_k3_e3", "skip_connect")), Stage(24, 2, ("mbconv_k5_e6_se",))),
                       stem_channels=8)
FIXED = FixedGenotype("conv4", {"hidden": 32})


@pytest.mark.parametrize("g", [DARTS, BLOCKS, FIXED])
def test_round_trips_and_hashing(g, tmp_path):
    assert genotype_from_yaml(g.to_yaml()) == g
    assert genotype_from_json(g.to_json()) == g
    assert genotype_from_dict(json.loads(g.to_json())) == g
    assert hash(genotype_from_yaml(g.to_yaml())) == hash(g)
    for suffix in (".yaml", ".json"):
        g.save(tmp_path / f"g{suffix}")
        assert load_genotype(tmp_path / f"g{suffix}") == g
    assert len({g, genotype_from_yaml(g.to_yaml())}) == 1


def test_different_genotypes_differ():
    other = DartsGenotype(normal=CELL, reduce=CellGenotype(((("sep_conv_5x5", 0), ("skip_connect", 1)),
                                                           (("dil_conv_3x3", 0), ("max_pool_3x3", 2)))),
                          channels=8, cells=3)
    assert other != DARTS and hash(other) != hash(DARTS)


@pytest.mark.parametrize("nodes, message", [
    (((("sep_conv_3x3", 0), ("warp_drive", 1)),), r"normal cell, node 2, edge from 1: unknown op 'warp_drive'"),
    (((("sep_conv_3x3", 0), ("skip_connect", 2)),), r"normal cell, node 2, edge from 2: input 2 does not exist"),
    (((("none", 0), ("skip_connect", 1)),), r"op 'none' cannot be kept"),
    (((("sep_conv_3x3", 1), ("skip_connect", 1)),), r"node 2: input used twice"),
    ((), r"normal cell: no nodes"),
])
def test_invalid_cells_name_the_fault(nodes, message):
    with pytest.raises(GenotypeError, match=message):
        DartsGenotype(normal=CellGenotype(nodes), reduce=CELL)


def test_invalid_blocks_and_files():
    with pytest.raises(GenotypeError, match="stage 0, layer 0: the first layer"):
        BlockGenotype(stages=(Stage(16, 2, ("skip_connect",)),))
    with pytest.raises(GenotypeError, match="stage 0, layer 1: unknown op"):
        BlockGenotype(stages=(Stage(16, 2, ("mbconv_k3_e3", "mbconv_k9_e3")),))
    with pytest.raises(GenotypeError, match="unknown fixed model"):
        FixedGenotype("vgg16")
    with pytest.raises(GenotypeError, match="needs 'space'"):
        genotype_from_yaml("normal: []")
    with pytest.raises(GenotypeError, match="darts genotype"):
        genotype_from_yaml("space: darts\nnormal: {nodes: []}\nbogus: 1")


def test_graph():
    g = DARTS.graph()
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert g.edges["normal/c_{k-2}", "normal/0"]["op"] == "sep_conv_3x3"
    assert g.edges["reduce/0", "reduce/1"]["op"] == "max_pool_3x3"
    assert g.in_degree("normal/c_{k}") == 2  # concat of both intermediate nodes
    chain = BLOCKS.graph()
    assert [chain.edges[e]["op"] for e in nx.dfs_edges(chain, "stem")] == ["mbconv_k3_e3", "skip_connect",
                                                                            "mbconv_k5_e6_se"]


def test_plot_writes_pngs(tmp_path):
    files = DARTS.plot(tmp_path / "cells")
    assert [f.name for f in files] == ["cells_normal.png", "cells_reduce.png"]
    for f in files + BLOCKS.plot(tmp_path / "blocks.png"):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000


def test_params_and_macs_of_conv4_by_hand():
    # conv4, hidden 32, 1x28x28: conv params 9*1*32+32, 3 x (9*32*32+32); BN 2*32 each
    params = (9 * 32 + 32) + 3 * (9 * 32 * 32 + 32) + 4 * 64
    macs = 28 * 28 * 32 * 9 + 14 * 14 * 32 * 32 * 9 + 7 * 7 * 32 * 32 * 9 + 3 * 3 * 32 * 32 * 9
    assert FIXED.params((1, 28, 28)) == params
    assert FIXED.macs((1, 28, 28)) == macs


def test_macs_grow_with_input_size():
    assert DARTS.macs((3, 84, 84)) > 8 * DARTS.macs((3, 28, 28))
    assert DARTS.params((3, 84, 84)) == DARTS.params((3, 28, 28))


def test_fixed_genotype_builds_the_registered_model():
    torch.manual_seed(0)
    a = build_network(FIXED, in_channels=1)
    torch.manual_seed(0)
    b = create_model("conv4", in_channels=1, hidden=32)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("g", [FixedGenotype("conv4"), FixedGenotype("resnet12", {"widths": [8, 16, 24, 32]})])
@pytest.mark.parametrize("size", [(1, 28, 28), (3, 32, 32), (3, 84, 84)])
def test_fixed_backbones_take_every_input_size(g, size):
    out = build_network(g, in_channels=size[0])(torch.randn(2, *size))
    assert out.shape[0] == 2 and out.dim() == 2 and torch.isfinite(out).all()


def test_every_genotype_kind_registers_its_network_and_graph_and_every_space_its_crossover():
    from search_spaces import CROSSOVERS, GENOTYPES, GRAPHS, NETWORKS, SPACES, create_supernet, recombine
    assert GENOTYPES.names() == NETWORKS.names() == GRAPHS.names() == ["blocks", "darts", "elastic", "fixed"]
    gen = torch.Generator().manual_seed(0)
    for space in SPACES:
        net = create_supernet(space, 1)
        a, b = net.sample_path(gen), net.sample_path(gen)
        assert a.kind in CROSSOVERS
        assert recombine(a, b, lambda: False) == a and recombine(a, b, lambda: True) == b
