"""What every registered learner declares (``needs``, ``takes_loss``, ``inner_loop``, ``fixed_ways``) agrees with
its constructor and with what it does, so a new learner that forgets to declare fails here; the export hook
``fold_into_backbone`` folds what only MTL learns besides the backbone."""

import copy
import inspect

import pytest
import torch
from torch import nn

from meta.episodes import Episode
from meta.learners import GIVEN, LEARNERS, MTL
from meta.scale_shift import FoldError
from search_spaces import create_model

IN_SHAPE = (1, 8, 8)


def constructor_params(cls) -> set[str]:
    """Keyword parameters of ``cls``'s constructor, following ``**options`` into its base classes (MTL passes
    them on to MAML)."""
    out: set[str] = set()
    for owner in cls.__mro__:
        if "__init__" not in vars(owner):
            continue
        params = inspect.signature(owner.__init__).parameters
        out |= {k for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out - {"self", "model"}


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)  # a conv, so MTL has something to scale and shift; no out_channels: in_shape is needed
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def build(name: str, n_way: int = 5):
    cls = LEARNERS[name]
    given = {"n_way": n_way, "in_shape": IN_SHAPE}
    return cls(tiny_backbone(), **{k: given[k] for k in cls.needs})


def episode(n_way: int) -> Episode:
    g = torch.Generator().manual_seed(n_way)
    labels = torch.arange(n_way).repeat(2)
    support, query = (torch.randn(2 * n_way, *IN_SHAPE, generator=g) for _ in range(2))
    return Episode(support, labels, query, labels, torch.arange(n_way))


@pytest.mark.parametrize("name", LEARNERS.names())
def test_declared_capabilities_agree_with_the_constructor(name):
    cls, params = LEARNERS[name], constructor_params(LEARNERS[name])
    assert isinstance(cls.needs, tuple) and len(set(cls.needs)) == len(cls.needs)
    assert set(cls.needs) == params & set(GIVEN), f"{name} must declare needs = the given arguments it takes"
    assert cls.takes_loss == ("loss" in params and "loss_options" in params)
    assert cls.inner_loop == ("test_steps" in params)
    assert not cls.fixed_ways or "n_way" in cls.needs  # a head bound to the ways is built from n_way


@pytest.mark.parametrize("name", LEARNERS.names())
def test_declared_capabilities_agree_with_what_the_learner_does(name):
    cls = LEARNERS[name]
    learner = build(name, n_way=5)
    assert hasattr(learner, "test_steps") == cls.inner_loop
    if cls.inner_loop:
        learner.test_steps = 1  # settable, and used by predict
    assert (learner.loss is not None) == cls.takes_loss
    assert learner.predict(episode(5)).shape == (10, 5)
    if cls.fixed_ways:
        with pytest.raises(ValueError, match="5 outputs"):
            learner.predict(episode(3))
    else:
        assert learner.predict(episode(3)).shape == (6, 3)


@pytest.mark.parametrize("name", [n for n in LEARNERS.names() if n != "mtl"])
def test_learners_without_anything_to_fold_leave_the_backbone_alone(name):
    learner = build(name)
    plain = tiny_backbone()
    before = copy.deepcopy(plain.state_dict())
    assert LEARNERS[name].fold_into_backbone(plain, learner.trained_state(), IN_SHAPE) is None
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in before.items())


def test_mtl_folds_its_scale_shift_into_the_backbone():
    backbone = create_model("conv4", in_channels=1, hidden=8).eval()
    plain = copy.deepcopy(backbone)
    mtl = MTL(backbone, n_way=5, in_shape=(1, 28, 28))
    with torch.no_grad():
        for p in mtl.ss.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        hooked = backbone(x)
    assert "scale/shift" in MTL.fold_into_backbone(plain, mtl.trained_state(), (1, 28, 28))
    with torch.no_grad():  # scaled kernels against scaled outputs: other kernels, rounding apart by a few ulps
        torch.testing.assert_close(plain(x), hooked, rtol=1e-5, atol=1e-5)
    assert MTL.fold_into_backbone(plain, {"meta": {}}, (1, 28, 28)) is None
    with pytest.raises(FoldError, match="cannot be folded into the plain backbone"):
        MTL.fold_into_backbone(tiny_backbone(), mtl.trained_state(), IN_SHAPE)  # another backbone's scale/shift
