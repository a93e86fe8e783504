"""MAML: exact identities (no inner steps = plain forward), meta-gradients against finite differences,
first vs second order, ANIL, Meta-SGD, per-step BatchNorm, and a small run that must learn."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from meta.data import load_dataset
from meta.episodes import Episode, EpisodeSampler
from meta.evaluation import evaluate
from meta.learners import MAML, MetaModel
from search_spaces import create_model


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", train_classes=30, val_classes=10, test_classes=10, images_per_class=16)


def tiny_task(seed=0):
    g = torch.Generator().manual_seed(seed)
    sx, qx = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    return sx, torch.tensor([0, 1, 2] * 2), qx, torch.tensor([0, 1, 2] * 3)


def tiny_meta(order="second", **kw):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(4, 5), nn.Tanh()).double()
    meta = MetaModel(backbone, 3, inner_lr=0.5, steps=2, first_order=order == "first", in_shape=(4,), **kw).double()
    with torch.no_grad():  # a non-zero head, so every parameter matters in the first inner step
        meta.head.weight.normal_()
    return meta


def meta_loss(meta, first_order):
    sx, sy, qx, qy = tiny_task()
    fast = meta.clone(first_order)
    for _ in range(2):
        fast.adapt(F.cross_entropy(fast(sx), sy))
    return F.cross_entropy(fast(qx), qy), fast


def test_second_order_meta_gradient_matches_finite_differences_and_first_order_differs():
    meta = tiny_meta()
    loss, _ = meta_loss(meta, first_order=False)
    params = dict(meta.named_parameters())
    second = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    numeric = {}
    eps = 1e-6
    for name, p in params.items():
        num = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += eps
            up = meta_loss(meta, False)[0].item()
            with torch.no_grad():
                p.view(-1)[i] -= 2 * eps
            down = meta_loss(meta, False)[0].item()
            with torch.no_grad():
                p.view(-1)[i] += eps
            num.view(-1)[i] = (up - down) / (2 * eps)
        numeric[name] = num
        torch.testing.assert_close(second[name], num, atol=1e-7, rtol=1e-5)

    loss_fo, fast = meta_loss(meta, first_order=True)
    first = dict(zip(params, torch.autograd.grad(loss_fo, list(params.values()))))
    # first order: the query-loss gradient at the adapted weights, applied to the initialisation
    at_adapted = torch.autograd.grad(F.cross_entropy(fast(tiny_task()[2]), tiny_task()[3]), list(fast.params.values()))
    for (name, g), direct in zip(first.items(), at_adapted):
        torch.testing.assert_close(g, direct)
    assert max((first[n] - numeric[n]).abs().max() for n in params) > 1e-3


def test_zero_inner_steps_equal_the_plain_forward(synthetic):
    torch.manual_seed(0)
    maml = MAML(create_model("conv4", in_channels=1, hidden=8), n_way=5, steps=0, in_shape=(1, 28, 28))
    with torch.no_grad():
        maml.meta.head.weight.normal_()
    ep = EpisodeSampler(synthetic, "test", 5, 1, 4, seed=3).episode(0)
    for mode in ("eval", "transductive"):
        maml.bn_mode = mode
        expected = maml.meta.train(mode == "transductive")(ep.query_x) if mode == "eval" else None
        got = maml.predict(ep)
        if mode == "eval":
            assert torch.equal(got, expected.detach())
        else:  # transductive: batch statistics of the query batch, running buffers untouched
            before = copy.deepcopy(maml.meta.state_dict())
            with torch.no_grad():
                ref = maml.meta.train()(ep.query_x)
            maml.meta.load_state_dict(before)
            assert torch.allclose(maml.predict(ep), ref)
            assert all(torch.equal(v, maml.meta.state_dict()[k]) for k, v in before.items())


def test_anil_adapts_only_the_head_and_meta_sgd_learns_rates(synthetic):
    torch.manual_seed(0)
    sampler = EpisodeSampler(synthetic, "train", 5, 1, 3, seed=0)
    anil = MAML(create_model("conv4", in_channels=1, hidden=8), n_way=5, steps=2, anil=True, in_shape=(1, 28, 28))
    assert set(anil.meta.adaptable()) == {"head.weight", "head.bias"}
    w0 = anil.model.features[0][0].weight.detach().clone()
    anil.meta_train_step([sampler.episode(0)])
    assert not torch.equal(w0, anil.model.features[0][0].weight)  # the outer loop still trains the backbone

    sgd = MAML(create_model("conv4", in_channels=1, hidden=8), n_way=5, steps=1, meta_sgd=True, in_shape=(1, 28, 28))
    lrs0 = {k: v.detach().clone() for k, v in sgd.meta.lrs.items()}
    assert all(torch.all(v == 0.4) for v in lrs0.values()) and set(sgd.meta.lrs) and "lrs.head__weight" in \
        sgd.meta.state_dict()
    sgd.meta_train_step([sampler.episode(0), sampler.episode(1)])
    assert any(not torch.equal(lrs0[k], v) for k, v in sgd.meta.lrs.items())


def test_per_step_batchnorm_statistics(synthetic):
    torch.manual_seed(0)
    maml = MAML(create_model("conv4", in_channels=1, hidden=8), n_way=5, steps=2, bn_stats="per_step",
                in_shape=(1, 28, 28))
    running = maml.model.features[0][1].running_mean.clone()
    maml.meta_train_step([EpisodeSampler(synthetic, "train", 5, 1, 3, seed=0).episode(0)])
    state = maml.meta.state_dict()
    s0, s1, s2 = (state[f"step{s}__features__0__1__running_mean"] for s in range(3))
    # every step's statistics moved, and the query pass (step 2) has its own; steps 0 and 1 see the same support
    # images through the same first layer (a zero head leaves the backbone unchanged by the first inner step)
    assert not torch.equal(s0, running) and not torch.equal(s1, running) and not torch.equal(s0, s2)
    assert torch.equal(maml.model.features[0][1].running_mean, running)  # the shared ones are not used
    assert set(maml.trained_state()["meta"]) >= {"head.weight", "step2__features__0__1__running_var"}


def test_fixed_head_refuses_other_ways(synthetic):
    maml = MAML(create_model("conv4", in_channels=1, hidden=8), n_way=5, in_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="train.episode.n_way=3"):
        maml.predict(EpisodeSampler(synthetic, "test", 3, 1, 2, seed=0).episode(0))


def test_one_step_first_order_is_warned_about(caplog):
    backbone = create_model("conv4", in_channels=1, hidden=8)
    with caplog.at_level("WARNING", logger="meta.learners.maml"):
        MAML(backbone, n_way=5, steps=2, order="first", in_shape=(1, 28, 28))
        assert not caplog.records
        MAML(backbone, n_way=5, steps=1, order="first", in_shape=(1, 28, 28))
    assert "steps >= 2" in caplog.text


def test_second_order_maml_learns(synthetic):
    torch.manual_seed(0)
    maml = MAML(create_model("conv4", in_channels=1, hidden=16), n_way=5, steps=2, inner_lr=0.4, lr=0.003,
                in_shape=(1, 28, 28))
    sampler = EpisodeSampler(synthetic, "train", 5, 1, 3, seed=0)
    for step in range(150):
        maml.meta_train_step([sampler.episode(2 * step), sampler.episode(2 * step + 1)])
    maml.bn_mode = "transductive"
    res = evaluate(maml, EpisodeSampler(synthetic, "test", 5, 1, 5, seed=1), 40, progress=False)
    assert res.accuracy > 0.5, res.line()  # chance is 0.2 (measured: 72.5%)


@pytest.mark.parametrize("options", [{"order": "first"}, {"anil": True, "meta_sgd": True},
                                     {"order": "first", "bn_stats": "per_step"}])
def test_vmap_meta_batch_gives_the_loop_gradients(synthetic, options):
    sampler = EpisodeSampler(synthetic, "train", 3, 1, 2, seed=0)
    episodes = [sampler.episode(i) for i in range(3)]
    grads, bn, alone = [], [], []
    for vmap in (False, True):
        torch.manual_seed(0)
        learner = MAML(create_model("conv4", in_channels=1, hidden=4).double(), n_way=3, steps=2, inner_lr=0.3, in_shape=(1, 28, 28),
                       vmap=vmap, **options)
        learner.meta.double()
        with torch.no_grad():
            learner.meta.head.weight.normal_()  # every parameter matters in the first inner step
        eps = [type(ep)(ep.support_x.double(), ep.support_y, ep.query_x.double(), ep.query_y, ep.classes)
               for ep in episodes]
        learner.optimizer.step = lambda: None  # keep the gradients, not the update
        if not vmap:  # each task alone from the same running statistics
            start = copy.deepcopy(learner.meta.state_dict())
            learner.meta.train()
            for ep in eps:
                learner.meta.load_state_dict(start)
                learner.adapt_and_predict(ep, 2, first_order=True)
                alone.append({n: b.clone() for n, b in learner.meta.named_buffers()})
            learner.meta.load_state_dict(start)
        metrics = learner.meta_train_step(eps)
        grads.append({n: p.grad.clone() for n, p in learner.meta.named_parameters() if p.grad is not None})
        bn.append(dict(learner.meta.named_buffers()))
        assert len(metrics["hard_classes"]) == 3
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-9, atol=1e-11, msg=n)
    # running statistics under vmap: the mean over tasks of what each task alone leaves
    for n, b in bn[1].items():
        expected = torch.stack([a[n].double() for a in alone]).mean(0).to(b.dtype) if b.is_floating_point() \
            else alone[0][n]
        torch.testing.assert_close(b, expected, rtol=1e-9, atol=1e-12, msg=n)
    assert any(not torch.equal(bn[1][n], alone[0][n]) for n in bn[1] if "running_mean" in n)


def test_vmap_refuses_second_order_through_batchnorm_and_is_exact_without_it():
    with pytest.raises(ValueError, match="functorch#534"):
        MAML(create_model("conv4", in_channels=1, hidden=4), n_way=3, in_shape=(1, 28, 28), vmap=True)
    g = torch.Generator().manual_seed(0)
    episodes = [Episode(torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2] * 2),
                        torch.randn(9, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2] * 3),
                        torch.arange(3)) for _ in range(3)]
    grads = []
    for vmap in (False, True):
        torch.manual_seed(0)
        backbone = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh()).double()
        learner = MAML(backbone, n_way=3, steps=2, inner_lr=0.5, in_shape=(4,), vmap=vmap)
        learner.meta.double()
        with torch.no_grad():
            learner.meta.head.weight.normal_()
        learner.optimizer.step = lambda: None
        learner.meta_train_step(episodes)
        grads.append({n: p.grad.clone() for n, p in learner.meta.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-9, atol=1e-12, msg=n)
