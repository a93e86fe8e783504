import math

import pytest
import torch

from meta.episodes import EpisodeSampler
from meta.evaluation import Z_95, evaluate, mean_ci95

from ..conftest import toy_dataset


def test_ci_matches_hand_computation():
    # mean 0.775; sample std sqrt(0.1475 / 3) = 0.2217356; CI = 1.959964 * 0.2217356 / 2 = 0.2172967
    mean, ci, std = mean_ci95([0.5, 0.7, 0.9, 1.0])
    assert mean == pytest.approx(0.775, abs=1e-12)
    assert std == pytest.approx(math.sqrt(0.1475 / 3), abs=1e-12)
    assert ci == pytest.approx(0.2172967, abs=1e-6)
    assert Z_95 == pytest.approx(1.959964, abs=1e-6)


def test_ci_edge_cases():
    assert mean_ci95([0.3] * 10) == (pytest.approx(0.3), 0.0, 0.0)
    assert mean_ci95([1.0]) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        mean_ci95([])


class Oracle:
    """Reads the class id that toy images carry in a pixel, so it is always right."""

    def __init__(self, wrong_every: int = 0):
        self.calls, self.wrong_every = 0, wrong_every

    def predict(self, ep):
        self.calls += 1
        logits = torch.nn.functional.one_hot(ep.query_y, ep.n_way).float()
        if self.wrong_every and self.calls % self.wrong_every == 0:
            logits = logits.roll(1, dims=1)  # every query wrong in this episode
        return logits


def test_evaluate_counts_episodes_and_accuracy():
    ds = toy_dataset(classes=30)
    sampler = EpisodeSampler(ds, "test", 5, 1, 3, seed=0)
    res = evaluate(Oracle(), sampler, episodes=40, progress=False)
    assert (res.accuracy, res.ci95, res.episodes) == (1.0, 0.0, 40)
    res = evaluate(Oracle(wrong_every=4), sampler, episodes=40, progress=False)
    assert res.accuracy == pytest.approx(0.75)
    assert res.ci95 == pytest.approx(mean_ci95([0.0 if (i + 1) % 4 == 0 else 1.0 for i in range(40)])[1])
