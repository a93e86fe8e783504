"""Meta-transfer learning: scale/shift is the identity at init and the kernel/bias change MTL defines;
phase 2 trains scale/shift and the classifier, never the frozen backbone."""

import torch
from torch import nn

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from meta.learners import MTL
from meta.scale_shift import ScaleShift
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
            assert torch.equal(net(x), before)
            ss.detach()
            assert torch.equal(net(x), before)


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
