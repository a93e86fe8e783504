"""The fine-tune baseline: a new head per episode on frozen features, deterministic, backbone untouched."""

import pytest
import torch
from torch import nn

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from meta.evaluation import evaluate
from meta.learners import FineTune, ProtoNet


def pixels() -> nn.Module:
    """Pooled raw pixels (a 1x1 identity convolution, so the optimisers have a parameter to hold)."""
    conv = nn.Conv2d(1, 1, 1)
    nn.init.ones_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.AvgPool2d(2), nn.Flatten())


def test_head_fits_the_support_set_and_leaves_the_backbone_alone():
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=10, images_per_class=20)
    backbone = pixels()
    before = backbone[0].weight.detach().clone()
    learner = FineTune(backbone, steps=100, lr=0.05)
    ep = EpisodeSampler(ds, "test", 5, 1, 10, seed=0).episode(3)
    logits = learner.predict(ep)
    assert logits.shape == (50, 5) and torch.equal(logits, learner.predict(ep))  # zero init: deterministic
    head = learner.fit_head(learner.features(ep.support_x), ep.support_y, 5)
    assert torch.equal(head(learner.features(ep.support_x)).argmax(1), ep.support_y)
    with pytest.raises(RuntimeError, match="train.steps: 0"):
        learner.meta_train_step([ep])
    assert torch.equal(backbone[0].weight, before) and not backbone[0].weight.requires_grad


def test_finetune_is_well_above_chance_and_near_prototypes_on_the_same_features():
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=10, images_per_class=20)
    backbone = pixels()
    sampler = EpisodeSampler(ds, "test", 5, 1, 10, seed=0)
    tuned = evaluate(FineTune(backbone, steps=100, lr=0.05), sampler, 40, "cpu", progress=False)
    cosine = evaluate(FineTune(backbone, normalize=True), sampler, 40, "cpu", progress=False)
    proto = evaluate(ProtoNet(backbone), sampler, 40, "cpu", progress=False)
    assert tuned.accuracy > 0.5 and cosine.accuracy > 0.5  # chance: 0.2
    assert abs(tuned.accuracy - proto.accuracy) < 0.15
