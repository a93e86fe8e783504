"""Mixed precision in meta-training (train.amp): the backbone's forward in bfloat16, losses, distances,
weights and BatchNorm statistics in float32; off, nothing changes."""

import pytest
import torch
from torch import nn

from meta.episodes import Episode
from meta.learners import LEARNERS, prototype_logits, prototypes

IN_SHAPE = (1, 8, 8)


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def episode(n_way: int = 5, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_way).repeat(2)
    centres = torch.randn(n_way, *IN_SHAPE, generator=g)  # learnable: images near their class's centre
    support, query = (centres[labels] + 0.3 * torch.randn(2 * n_way, *IN_SHAPE, generator=g) for _ in range(2))
    return Episode(support, labels, query, labels, torch.arange(n_way))


def learner(name: str, amp: bool, **options):
    cls = LEARNERS[name]
    given = {"n_way": 5, "in_shape": IN_SHAPE}
    out = cls(backbone(), **{k: given[k] for k in cls.needs}, **options)
    out.amp = amp
    return out


def conv_output_dtypes(model: nn.Module) -> list[torch.dtype]:
    seen = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("name, options", [("protonet", {}), ("maml", {"order": "second", "steps": 2}),
                                           ("maml", {"order": "first", "steps": 2})])
def test_amp_runs_the_forward_in_bfloat16_and_keeps_the_rest_float32(name, options):
    plain, mixed = learner(name, False, **options), learner(name, True, **options)
    dtypes = conv_output_dtypes(mixed.model)
    ep = episode()
    reference = plain.meta_train_step([ep])
    out = mixed.meta_train_step([ep])
    assert torch.bfloat16 in dtypes  # the convolutions ran in bfloat16
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    assert all(b.dtype in (torch.float32, torch.int64) for b in mixed.model.buffers())  # BN statistics
    assert out["loss"] == pytest.approx(reference["loss"], rel=0.05)  # same init, same episode
    assert out["loss"] != reference["loss"]  # but not the float32 computation
    assert mixed.predict(ep).dtype == torch.float32


def test_without_amp_nothing_runs_in_bfloat16():
    plain = learner("protonet", False)
    dtypes = conv_output_dtypes(plain.model)
    plain.meta_train_step([episode()])
    assert dtypes and set(dtypes) == {torch.float32}


def test_prototype_distances_stay_float32_inside_autocast():
    g = torch.Generator().manual_seed(0)
    feats = (100 + torch.randn(10, 64, generator=g)).to(torch.bfloat16)  # large norms, small differences
    labels = torch.arange(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = prototype_logits(feats[5:], prototypes(feats[:5], labels, 5))
    exact = -torch.cdist(feats[5:].float(), prototypes(feats[:5].float(), labels, 5)).pow(2)
    assert logits.dtype == torch.float32 and torch.allclose(logits, exact)


def test_a_protonet_learns_in_mixed_precision():
    mixed = learner("protonet", True, lr=0.01)
    first = [mixed.meta_train_step([episode(seed=s)])["loss"] for s in range(5)]
    for s in range(5, 60):
        mixed.meta_train_step([episode(seed=s)])
    last = [mixed.meta_train_step([episode(seed=s)])["loss"] for s in range(60, 65)]
    assert sum(last) < 0.5 * sum(first)
