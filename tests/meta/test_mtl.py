"""Meta-transfer learning: scale/shift is the identity at init and the kernel/bias change MTL defines;
phase 2 trains scale/shift and the classifier, never the frozen backbone; folded into the weights it
computes what the hooks compute."""

import pytest
import torch
from torch import nn

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from meta.learners import MTL
from meta.scale_shift import FoldError, ScaleShift, fold_scale_shift
from search_spaces import build_network, create_model, create_supernet


def test_scale_shift_at_init_leaves_every_backbone_unchanged():
    torch.manual_seed(0)
    darts = build_network(create_supernet("darts", 1, channels=4, cells=3, nodes=2).sample_path(
        torch.Generator().manual_seed(0)), 1)
    with_bias = nn.Sequential(nn.Conv2d(1, 3, 3, bias=True), nn.ReLU(), nn.Conv2d(3, 2, 3, bias=True))
    for net in (create_model("conv4", in_channels=1, hidden=8), darts, with_bias):
        net.eval()
        x = torch.randn(3, 1, 28, 28)
        with torch.no_grad():
            before = net(x)
            ss = ScaleShift(net).attach()
            hooked = net(x)
            if any(m.bias is not None for m in ss.convs.values()):
                # the hook computes (out - b) * 1 + b + 0, which rounds away from out by an ulp here and there
                # (how often depends on the CPU's kernels: AMD EPYC differs), so it is equal within float32 rounding
                torch.testing.assert_close(hooked, before, rtol=1e-5, atol=1e-6)
            else:  # out * 1 + 0 is out to the bit, whatever the kernels
                assert torch.equal(hooked, before)
            ss.detach()
            assert torch.equal(net(x), before)  # the same kernels on the same input again


def test_scale_shift_scales_kernels_and_shifts_biases():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, bias=True)
    x = torch.randn(4, 2, 8, 8)
    ss = ScaleShift(nn.Sequential(conv)).attach()
    with torch.no_grad():
        ss.scale["0"].copy_(torch.tensor([2.0, 0.5, -1.0]))
        ss.shift["0"].copy_(torch.tensor([0.1, 0.0, 3.0]))
        expected = nn.functional.conv2d(x, conv.weight * ss.scale["0"].view(-1, 1, 1, 1), conv.bias + ss.shift["0"])
        torch.testing.assert_close(conv(x), expected)


def test_mtl_trains_scale_shift_and_classifier_only():
    ds = load_dataset("synthetic", train_classes=20, val_classes=10, test_classes=5, images_per_class=12)
    torch.manual_seed(0)
    backbone = create_model("conv4", in_channels=1, hidden=8)
    weights = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    mtl = MTL(backbone, n_way=5, steps=3, in_shape=(1, 28, 28))
    ss0 = {k: v.detach().clone() for k, v in mtl.ss.state_dict().items()}
    sampler = EpisodeSampler(ds, "train", 5, 1, 3, seed=0)
    mtl.meta_train_step([sampler.episode(0), sampler.episode(1)])
    mtl.meta_train_step([sampler.episode(2)])
    assert all(torch.equal(v, dict(backbone.named_parameters())[k]) for k, v in weights.items())
    assert any(not torch.equal(v, mtl.ss.state_dict()[k]) for k, v in ss0.items())
    assert mtl.meta.head.weight.abs().sum() > 0 and set(mtl.trained_state()) == {"meta", "ss"}
    assert mtl.predict(EpisodeSampler(ds, "test", 5, 1, 2, seed=0).episode(0)).shape == (10, 5)


@pytest.mark.parametrize("name", ["conv4", "resnet12", "darts", "blocks"])
def test_folded_scale_shift_computes_what_the_hooks_compute(name):
    torch.manual_seed(0)
    net = {"conv4": lambda: create_model("conv4", in_channels=1, hidden=8),
           "resnet12": lambda: create_model("resnet12", in_channels=1),
           "darts": lambda: build_network(create_supernet("darts", 1, channels=4, cells=3, nodes=3).sample_path(
               torch.Generator().manual_seed(2)), 1),  # sep/dil convs: shifts pass 1x1 convs; FactorizedReduce
           "blocks": lambda: build_network(create_supernet("blocks", 1, stem_channels=4, stages=[[8, 2, 2]]).sample_path(
               torch.Generator().manual_seed(1)), 1)}[name]()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    ss = ScaleShift(net).attach()
    with torch.no_grad():
        for p in ss.scale.values():
            p.uniform_(0.5, 1.5)
        for p in ss.shift.values():
            p.normal_()
    x = torch.randn(4, 1, 28, 28)
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():  # train mode updates the running statistics: restore them afterwards
        hooked = {mode: net.train(mode == "train")(x) for mode in ("eval", "train")}
    net.load_state_dict(stats)
    ss.detach()
    net.eval()
    probe = ScaleShift(net).attach()
    with pytest.raises(FoldError, match="detach"):
        fold_scale_shift(net, probe, x)
    probe.detach()
    fold_scale_shift(net, ss, x)
    with torch.no_grad():
        for mode in ("eval", "train"):
            torch.testing.assert_close(net.train(mode == "train")(x), hooked[mode], atol=2e-5, rtol=1e-5)


def test_a_shift_that_cannot_pass_exactly_is_refused_and_nothing_changes():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.Conv2d(3, 2, 3))
    ss = ScaleShift(net)
    with torch.no_grad():
        ss.shift["0"].fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(FoldError, match="does not pass it exactly"):
        fold_scale_shift(net, ss, torch.randn(1, 1, 8, 8))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
