"""The elastic space: Conv-4 and ResNet-12 are points of it (the same networks, parameter for parameter),
a path run in the supernet equals its stand-alone subnet with the inherited weights, slicing and the kernel
transformation give the shapes they should, and genotypes round-trip and recombine within the choices."""

from pathlib import Path

import pytest
import torch

from search_spaces import (ElasticGenotype, ElasticStage, ElasticSupernet, GenotypeError, build_network,
                           create_model, genotype_from_dict, load_genotype, recombine)
from search_spaces.elastic.dynamic import DynamicConv2d

from ..conftest import input_shapes_run

GENOTYPES = Path(__file__).resolve().parents[2] / "configs" / "genotypes"


def same_network(fixed: torch.nn.Module, searched: torch.nn.Module, x: torch.Tensor) -> None:
    a, b = fixed.state_dict(), searched.state_dict()
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]  # the same tensors, in the same order
    assert sum(p.numel() for p in fixed.parameters()) == sum(p.numel() for p in searched.parameters())
    torch.manual_seed(1)
    for v in a.values():  # non-trivial BN statistics too
        if v.is_floating_point():
            v.copy_(torch.rand_like(v) + 0.5)
    searched.load_state_dict(dict(zip(b, a.values())))
    fixed.eval(), searched.eval()
    with torch.no_grad():
        assert torch.equal(fixed(x), searched(x))


@pytest.mark.parametrize("name, shape, features", [("conv4", (3, 1, 28, 28), 64), ("resnet12", (2, 3, 84, 84), 640)])
def test_the_hand_designed_genotypes_build_the_hand_designed_backbones(name, shape, features):
    g = load_genotype(GENOTYPES / f"{name}.yaml")
    x = torch.randn(*shape)
    net = build_network(g, in_channels=shape[1])
    same_network(create_model(name, in_channels=shape[1]), net, x)
    assert net(x).shape == (shape[0], features)


def small_supernet(**kw) -> ElasticSupernet:
    torch.manual_seed(0)
    opts = dict(stages=(2, 3), widths=(8, 12), depths=(1, 2), kernels=(3, 5), convs=(1, 2, 3),
                downsampling=("maxpool", "stride", "none"))
    return ElasticSupernet(in_channels=3, **{**opts, **kw})


@pytest.mark.parametrize("transform", [False, True])
def test_a_path_equals_its_stand_alone_subnet(transform):
    supernet = small_supernet(kernel_transform=transform)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 16, 16)
    seen = set()
    for _ in range(12):
        g = supernet.sample_path(gen)
        seen |= {s.block for s in g.stages}
        for mode in (True, False):  # batch statistics, then the (sliced) running ones
            supernet.train(mode)
            net = supernet.subnet(g)
            assert net.training == mode
            with torch.no_grad():
                torch.testing.assert_close(net(x), supernet(x, path=g), rtol=1e-5, atol=1e-6)
    assert seen == {"plain", "residual"}


def test_slicing_takes_the_first_channels_and_the_kernel_centre():
    conv = DynamicConv2d(6, 10, (3, 5, 7))
    w = conv.kernel(4, 2, 3)
    assert w.shape == (4, 2, 3, 3)
    assert torch.equal(w, conv.weight[:4, :2, 2:5, 2:5])
    assert conv(torch.randn(1, 2, 9, 9), 4, 5, stride=2).shape == (1, 4, 5, 5)
    t = DynamicConv2d(6, 10, (3, 5, 7), transform=True)
    assert torch.equal(t.kernel(4, 2, 7), t.weight[:4, :2])  # the largest kernel is not transformed
    torch.testing.assert_close(t.kernel(4, 2, 3), t.weight[:4, :2, 2:5, 2:5])  # identity maps at the start
    with torch.no_grad():
        getattr(t, "transform_3").mul_(2.0)
    torch.testing.assert_close(t.kernel(4, 2, 3), 2 * t.weight[:4, :2, 2:5, 2:5])


def test_sliced_batchnorm_updates_only_its_channels():
    supernet = small_supernet()
    g = ElasticGenotype(stages=(ElasticStage("plain", 1, 8, 3),) * 2, head="avgpool")
    bn = supernet.stage_blocks[0][0]["plain"].bn
    supernet.train()
    supernet(torch.randn(4, 3, 16, 16) * 3 + 1, path=g)
    assert not torch.equal(bn.running_mean[:8], torch.zeros(8)) and torch.equal(bn.running_mean[8:], torch.zeros(4))


def test_the_extreme_paths_and_choices():
    supernet = small_supernet()
    big, small = supernet.extreme_path(True), supernet.extreme_path(False)
    assert len(big.stages) == 3 and len(small.stages) == 2
    assert all(s.width == 12 and s.depth == 2 and s.kernel == 5 for s in big.stages)
    assert all(s.width == 8 and s.depth == 1 and s.kernel == 3 for s in small.stages)
    with pytest.raises(ValueError, match="width 64 is not a choice"):
        supernet.check_path(load_genotype(GENOTYPES / "conv4.yaml").__class__(
            stages=(ElasticStage("plain", 1, 64, 3),) * 2))
    with pytest.raises(ValueError, match="one path at a time"):
        supernet(torch.randn(1, 3, 16, 16))


def test_closed_dimensions_stay_at_their_anchor_and_open_ones_are_drawn():
    supernet = small_supernet()
    gen = torch.Generator().manual_seed(0)
    anchor = supernet.sample_path(gen, open=())
    assert anchor == supernet.extreme_path(True, gen, open=()) == supernet.extreme_path(False, gen, open=())
    assert len(anchor.stages) == 3 and anchor.head == supernet.heads[0]
    assert all((s.block, s.depth, s.width, s.kernel, s.down) == (supernet.blocks[0], 2, 12, 5, supernet.downsampling[0])
               for s in anchor.stages)
    seen = {dim: set() for dim in ("kernel", "width", "depth", "block")}
    for _ in range(60):
        g = supernet.sample_path(gen, open=("kernels", "widths"))
        assert len(g.stages) == 3 and g.head == anchor.head
        for s in g.stages:
            assert (s.block, s.depth, s.down) == (anchor.stages[0].block, 2, anchor.stages[0].down)
            for dim in seen:
                seen[dim].add(getattr(s, dim))
    assert seen["kernel"] == {3, 5} and seen["width"] == {8, 12} and len(seen["depth"]) == len(seen["block"]) == 1
    small = supernet.extreme_path(False, gen, open=("kernels",))
    assert all((s.kernel, s.width, s.depth) == (3, 12, 2) for s in small.stages) and len(small.stages) == 3
    # with nothing closed the draws are those of the plain sample_path: old seeds give the same paths
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [supernet.sample_path(a) for _ in range(5)] == [supernet.sample_path(b, open=supernet.dimensions)
                                                            for _ in range(5)]


def test_genotypes_round_trip_check_and_recombine():
    supernet = small_supernet()
    gen = torch.Generator().manual_seed(0)
    a, b = supernet.sample_path(gen), supernet.sample_path(gen)
    assert genotype_from_dict(a.to_dict()) == a
    flips = iter([True, False, True, False, True, True])
    child = recombine(a, b, lambda: next(flips, False))
    supernet.check_path(child)  # whole stages of one parent or the other: still a path of the supernet
    assert len(child.stages) == len(b.stages)
    for bad, words in (({"block": "dense", "depth": 1, "width": 8}, "not a block type"),
                       ({"block": "plain", "depth": 1, "width": 8, "kernel": 4}, "must be odd"),
                       ({"block": "plain", "depth": 1, "width": 8, "convs": 2}, "plain block has 1 convs"),
                       ({"block": "plain", "depth": "a", "width": 8}, "expected an integer")):
        with pytest.raises(GenotypeError, match=words):
            genotype_from_dict({"space": "elastic", "stages": [bad]})


def test_the_latency_plan_holds_every_slot_a_path_runs_at_the_shape_it_runs():
    from search_spaces.elastic.network import PlainBlock, ResidualBlock
    supernet = small_supernet(heads=("flatten", "avgpool"))
    shape = (3, 17, 17)  # odd sizes: pooling rounds down after plain stages and up after residual ones
    plan = supernet.latency_plan(shape)
    gen = torch.Generator().manual_seed(5)
    for _ in range(10):
        g = supernet.sample_path(gen)
        net = build_network(g, 3)
        parts = [m for m in net.modules() if isinstance(m, (PlainBlock, ResidualBlock, torch.nn.MaxPool2d))]
        parts += [net.head] if g.head == "avgpool" else []
        seen = input_shapes_run(net, parts, shape)
        slots = [plan.positions[p][o] for p, o in supernet.genotype_positions(g)]
        assert [s.input_shape() for s in slots] == seen  # in the order the network runs them
        assert [type(s.build()) for s in slots] == [type(m) for m in parts]
        assert all(plan.ops[o] == plan.positions[p][o].op for p, o in supernet.genotype_positions(g))


@pytest.mark.parametrize("config, points", [("omniglot_elastic_cpu", ["conv4"]),
                                            ("miniimagenet_elastic_gpu", ["conv4", "resnet12"])])
def test_the_shipped_configs_contain_the_hand_designed_backbones(config, points):
    import yaml
    search = yaml.safe_load((GENOTYPES.parent / "search" / f"{config}.yaml").read_text())["search"]
    supernet = ElasticSupernet(in_channels=3, **search["space_options"])
    for name in points:
        supernet.check_path(load_genotype(GENOTYPES / f"{name}.yaml"))
