"""Hard-task meta-batch: the worst class of each task is found, and hard tasks are built from those classes."""

import torch

from meta.episodes import EpisodeSampler
from meta.hard_tasks import hard_episodes, hardest_class

from ..conftest import toy_dataset


def image_classes(x: torch.Tensor) -> set[int]:
    """toy_dataset writes the dataset-level class id into pixel (0, 0); mean 0 and std 1 keep it readable."""
    return {round(float(v) * 255) for v in x[:, 0, 0, 0]}


def test_hardest_class_is_the_one_with_the_lowest_query_accuracy():
    sampler = EpisodeSampler(toy_dataset(classes=15), "train", 3, 1, 4, seed=0)
    ep = sampler.episode(0)
    logits = torch.nn.functional.one_hot(ep.query_y, 3).float()  # all right ...
    wrong = (ep.query_y == 1).nonzero().flatten()
    logits[wrong[:3]] = torch.tensor([1.0, 0.0, 0.0])  # ... but three of class 1's four queries
    logits[(ep.query_y == 2).nonzero().flatten()[0]] = torch.tensor([1.0, 0.0, 0.0])  # and one of class 2's
    assert hardest_class(logits, ep) == int(ep.classes[1])


def test_hard_tasks_are_drawn_from_the_recorded_classes_with_new_images():
    ds = toy_dataset(classes=30, per_class=10)
    sampler = EpisodeSampler(ds, "train", 3, 1, 2, seed=0)  # train split: dataset classes 0..9
    recorded = [4, 7, 1, 7, 9]
    for ep in hard_episodes(sampler, recorded, count=5, step=3):
        assert set(ep.classes.tolist()) <= {1, 4, 7, 9} and len(set(ep.classes.tolist())) == 3
        assert image_classes(torch.cat([ep.support_x, ep.query_x])) == set(ep.classes.tolist())
    few = hard_episodes(sampler, [5, 5], count=4, step=0)  # one distinct class: it is in every task
    assert all(5 in ep.classes.tolist() and len(set(ep.classes.tolist())) == 3 for ep in few)
    again = hard_episodes(sampler, recorded, count=5, step=3)
    assert all(torch.equal(a.query_x, b.query_x) for a, b in zip(again, hard_episodes(sampler, recorded, 5, 3)))
    other = hard_episodes(sampler, recorded, count=5, step=4)
    assert any(not torch.equal(a.query_x, b.query_x) for a, b in zip(again, other))
    ordinary = sampler.episode(3 * 5, again[0].classes.tolist())  # same classes, ordinary stream: other images
    assert not torch.equal(ordinary.query_x, again[0].query_x)
