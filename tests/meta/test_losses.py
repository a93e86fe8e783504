"""Long-tail losses: each equals cross-entropy at its neutral setting, stays finite at logits of +-1e4,
refuses class counts it would divide by zero, and does what its paper says."""

import pytest
import torch
import torch.nn.functional as F

from meta.losses import LOSSES, create_loss, effective_number_weights, needs_class_counts

COUNTS = torch.tensor([500, 120, 40, 9, 3])
NEUTRAL = {"cross_entropy": {}, "focal": {"gamma": 0.0}, "class_balanced": {"beta": 0.0},
           "balanced_softmax": {"tau": 0.0}, "ldam": {"max_margin": 0.0, "scale": 1.0},
           "seql": {"lam": 0.0}, "cdt": {"gamma": 0.0}, "ib": {"warmup": 1.0}}
ACTIVE = {"cross_entropy": {"label_smoothing": 0.1}, "focal": {"gamma": 2.0}, "class_balanced": {"beta": 0.99},
          "balanced_softmax": {"tau": 1.0}, "ldam": {"max_margin": 0.5, "scale": 30.0, "drw_start": 0.0},
          "seql": {"lam": 0.05, "gamma": 0.9}, "cdt": {"gamma": 0.3}, "ib": {"warmup": 0.0}}


def test_every_registered_loss_is_covered():
    assert set(LOSSES.names()) == set(NEUTRAL) == set(ACTIVE)


@pytest.mark.parametrize("name", sorted(NEUTRAL))
def test_neutral_setting_is_cross_entropy(name):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(32, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (32,), generator=g)
    loss = create_loss(name, class_counts=COUNTS, **NEUTRAL[name])
    torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_finite_at_huge_logits(name):
    logits = torch.tensor([[1e4, -1e4, 0.0, 5e3, -5e3], [-1e4, 1e4, 1e4, -1e4, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0])  # the worst case: the target logit is the smallest
    loss = create_loss(name, class_counts=COUNTS, **ACTIVE[name])
    if hasattr(loss, "step"):
        loss.step(10, 10)
    value = loss(logits, labels, features=torch.tensor([[1e4, -2.0], [0.5, 3.0]])) if name == "ib" \
        else loss(logits, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["class_balanced", "balanced_softmax", "ldam", "cdt", "ib"])
def test_zero_counts_are_refused_where_the_formula_divides_by_them(name):
    with pytest.raises(ValueError, match=r"classes \[2\] have no images"):
        create_loss(name, class_counts=torch.tensor([10, 5, 0, 3]))
    with pytest.raises(ValueError, match="needs the class counts"):
        create_loss(name)
    assert needs_class_counts(name)


def test_seql_takes_empty_classes_and_cross_entropy_takes_no_counts():
    create_loss("seql", class_counts=torch.tensor([10, 0, 3]))
    assert not needs_class_counts("cross_entropy") and not needs_class_counts("focal")
    create_loss("cross_entropy", class_counts=COUNTS)  # ignored by losses that do not use them


def test_what_each_loss_does():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(64, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (64,), generator=g)
    prior = COUNTS.double() / COUNTS.sum()
    torch.testing.assert_close(create_loss("balanced_softmax", class_counts=COUNTS)(logits, labels),
                               F.cross_entropy(logits + prior.log(), labels))
    w = effective_number_weights(COUNTS.double(), 0.99)
    assert w.sum().item() == pytest.approx(5) and bool((w[1:] > w[:-1]).all())  # rarer classes weigh more
    assert torch.allclose(effective_number_weights(torch.tensor([7.0, 7.0, 7.0]), 0.9), torch.ones(3))
    focal = create_loss("focal", gamma=2.0)(logits, labels)
    assert focal < F.cross_entropy(logits, labels)  # easy examples are down-weighted
    ldam = create_loss("ldam", class_counts=COUNTS, max_margin=0.5, scale=1.0, drw_start=0.5)
    ldam.step(0, 10)
    plain = ldam(logits, labels)
    ldam.step(5, 10)  # deferred re-weighting from half of training on
    assert not torch.equal(ldam(logits, labels), plain)
    assert plain > F.cross_entropy(logits, labels)  # a margin against the target makes the loss larger
    cdt = create_loss("cdt", class_counts=COUNTS, gamma=0.5)
    torch.testing.assert_close(cdt(logits, labels), F.cross_entropy(logits / (500 / COUNTS.double()) ** 0.5, labels))
    torch.manual_seed(0)
    seql_all = create_loss("seql", class_counts=COUNTS, lam=1.0, gamma=1.0)  # every class tail, always dropped
    assert seql_all(logits, labels).item() == pytest.approx(0.0, abs=1e-12)  # only the target stays


def test_influence_balanced_divides_by_influence_after_the_warm_up():
    g = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,), generator=g)
    feats = torch.randn(16, 8, generator=g, dtype=torch.float64)
    ib = create_loss("ib", class_counts=COUNTS, alpha=1.0, epsilon=0.0, warmup=0.5, class_weighted=False)
    ib.step(4, 10)
    torch.testing.assert_close(ib(logits, labels, features=feats), F.cross_entropy(logits, labels))  # warming up
    ib.step(5, 10)
    influence = (F.softmax(logits, 1) - F.one_hot(labels, 5)).abs().sum(1) * feats.abs().sum(1)
    expected = (F.cross_entropy(logits, labels, reduction="none") / influence).mean()
    torch.testing.assert_close(ib(logits, labels, features=feats), expected)
    with pytest.raises(ValueError, match="needs the features"):
        ib(logits, labels)


def test_episodic_losses_take_the_support_counts_of_each_episode():
    from meta.episodes import Episode
    from meta.losses import EpisodicLoss
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    support_y = torch.tensor([0, 0, 0, 0, 1, 1, 2])  # 4, 2, 1 shots
    ep = Episode(torch.zeros(7, 1, 2, 2), support_y, torch.zeros(6, 1, 2, 2), labels, torch.arange(3))
    bs = EpisodicLoss("balanced_softmax").for_episode(ep)
    torch.testing.assert_close(bs(logits, labels), create_loss("balanced_softmax", class_counts=[4, 2, 1])(logits, labels))
    torch.testing.assert_close(EpisodicLoss("focal", {"gamma": 0.0}).for_episode(ep)(logits, labels),
                               torch.nn.functional.cross_entropy(logits, labels))
    drw = EpisodicLoss("ldam", {"max_margin": 0.0, "scale": 1.0, "drw_start": 0.5, "drw_beta": 0.9})
    torch.testing.assert_close(drw.for_episode(ep)(logits, labels), torch.nn.functional.cross_entropy(logits, labels))
    drw.step(8, 10)  # past the start of the deferred re-weighting: class-balanced weights of the support counts
    w = effective_number_weights(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64), 0.9).float()
    torch.testing.assert_close(drw.for_episode(ep)(logits, labels),
                               torch.nn.functional.cross_entropy(logits, labels, weight=w))
    with pytest.raises(ValueError, match="ib loss needs the features"):
        EpisodicLoss("ib")
    with pytest.raises(TypeError):
        EpisodicLoss("focal", {"gama": 1.0})  # a bad option fails when the learner is built
