import pytest
import torch

from search_spaces import BlockSupernet, DartsSupernet, build_network, create_supernet

SIZES = [(1, 28, 28), (3, 32, 32), (3, 84, 84)]


def tiny_darts(in_channels=1, **kw):
    return DartsSupernet(in_channels=in_channels, channels=4, cells=3, nodes=3, **kw)


def tiny_blocks(in_channels=1, **kw):
    return BlockSupernet(in_channels=in_channels, stem_channels=8, stages=((8, 2, 2), (16, 2, 2)), **kw)


@pytest.mark.parametrize("make", [tiny_darts, tiny_blocks])
@pytest.mark.parametrize("size", SIZES)
def test_every_mode_keeps_shapes(make, size):
    torch.manual_seed(0)
    net = make(in_channels=size[0])
    x = torch.randn(2, *size)
    g = net.sample_path(torch.Generator().manual_seed(0))
    out = net(x)
    assert out.shape == (2, net.out_channels)
    assert net(x, path=g).shape == out.shape
    assert net.subnet(g)(x).shape == out.shape
    assert build_network(g, in_channels=size[0])(x).shape == out.shape


@pytest.mark.parametrize("make", [tiny_darts, tiny_blocks])
def test_subnet_equals_single_path(make):
    """The stand-alone network with inherited weights computes what the supernet's single path computes."""
    torch.manual_seed(0)
    net = make()
    x = torch.randn(6, 1, 28, 28)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):  # train a little in both modes so weights and BN statistics are not at their init
        opt.zero_grad()
        (net(x).square().mean() + net(x, path=net.sample_path(gen)).square().mean()).backward()
        opt.step()
    for _ in range(3):
        g = net.sample_path(gen)
        sub = net.subnet(g)
        assert torch.allclose(sub(x), net(x, path=g), atol=1e-5)  # train mode: batch statistics
        net.eval(), sub.eval()
        assert torch.allclose(sub(x), net(x, path=g), atol=1e-5)  # eval mode: inherited running statistics
        net.train()
        ops = sum(1 for m in sub.modules())
        assert ops < sum(1 for m in net.modules())  # only the chosen ops are held


def test_arch_parameters_live_in_the_state_dict_apart_from_weights():
    net = tiny_darts()
    keys = net.state_dict().keys()
    assert "alpha_normal" in keys and "alpha_reduce" in keys
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert arch.isdisjoint(weights) and len(arch) + len(weights) == len(list(net.parameters()))
    b = tiny_blocks()
    assert "alpha" in b.state_dict() and {id(p) for p in b.arch_parameters()}.isdisjoint(
        {id(p) for p in b.weight_parameters()})


def test_single_path_touches_only_the_path():
    torch.manual_seed(0)
    net = tiny_darts()
    g = net.sample_path(torch.Generator().manual_seed(3))
    net(torch.randn(2, 1, 28, 28), path=g).sum().backward()
    assert net.alpha_normal.grad is None
    with_grad = [p for p in net.weight_parameters() if p.grad is not None]
    assert 0 < len(with_grad) < len(net.weight_parameters())


@pytest.mark.parametrize("weighting", ["softmax", "sigmoid", "gumbel"])
def test_mixed_weightings_reach_the_architecture(weighting):
    torch.manual_seed(0)
    net = tiny_darts(weighting=weighting)
    net(torch.randn(2, 1, 28, 28)).square().mean().backward()
    assert net.alpha_normal.grad is not None and net.alpha_normal.grad.abs().sum() > 0
    assert net.alpha_reduce.grad is not None


def test_derive_picks_the_strongest_edges():
    net = tiny_darts()
    with torch.no_grad():
        net.alpha_normal.zero_()
        ops = net.op_index
        # node 0 (edges 0,1): favour sep_conv_3x3 on input 1; node 1 (edges 2,3,4): dil_conv_5x5 from node 0 (input 2)
        net.alpha_normal[1, ops["sep_conv_3x3"]] = 5.0
        net.alpha_normal[0, ops["avg_pool_3x3"]] = 3.0
        net.alpha_normal[4, ops["dil_conv_5x5"]] = 5.0
        net.alpha_normal[2, ops["max_pool_3x3"]] = 2.0
        net.alpha_normal[3, ops["none"]] = 10.0  # 'none' is never kept: it only weakens its edge
    g = net.derive()
    assert g.normal.nodes[0] == (("avg_pool_3x3", 0), ("sep_conv_3x3", 1))
    assert g.normal.nodes[1] == (("max_pool_3x3", 0), ("dil_conv_5x5", 2))


def test_partial_channels():
    torch.manual_seed(0)
    net = DartsSupernet(in_channels=3, channels=8, cells=3, nodes=3, partial_channels=4)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.out_channels)
    full = DartsSupernet(in_channels=3, channels=8, cells=3, nodes=3)
    assert sum(p.numel() for p in net.weight_parameters()) < sum(p.numel() for p in full.weight_parameters())
    with pytest.raises(ValueError, match="partial-channel"):
        net.subnet(net.sample_path())
    with pytest.raises(ValueError, match="must divide"):
        DartsSupernet(channels=6, partial_channels=4)


def test_path_from_another_space_is_refused():
    a, b = tiny_darts(), DartsSupernet(in_channels=1, channels=8, cells=3, nodes=3)
    with pytest.raises(ValueError, match="differs from the supernet"):
        a(torch.randn(1, 1, 28, 28), path=b.sample_path())


def test_create_supernet_registry():
    assert isinstance(create_supernet("darts", 1, channels=4, cells=3, nodes=2), DartsSupernet)
    with pytest.raises(KeyError, match="unknown search space"):
        create_supernet("nasbench", 1)
