"""The standard few-shot evaluation protocol: a fixed, seeded set of test episodes, mean accuracy and
its 95% confidence interval (normal approximation, 1.96 x sample standard deviation / sqrt(episodes))."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
from tqdm import tqdm

from .episodes import Episode, EpisodeSampler

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


class Predictor(Protocol):
    def predict(self, episode: Episode) -> torch.Tensor: ...


@dataclass
class EvalResult:
    accuracy: float  # mean query accuracy over episodes, in [0, 1]
    ci95: float  # half-width of the 95% confidence interval, same units
    episodes: int
    std: float
    per_episode: list[float] = field(default_factory=list, repr=False)

    def as_dict(self, per_episode: bool = False) -> dict:
        d = asdict(self)
        if not per_episode:
            d.pop("per_episode")
        return d

    def line(self) -> str:
        return f"{100 * self.accuracy:.2f} ± {100 * self.ci95:.2f}% over {self.episodes} episodes"


def mean_ci95(values: list[float] | torch.Tensor) -> tuple[float, float, float]:
    """Mean, 95% CI half-width and sample std (ddof=1) of per-episode accuracies."""
    v = torch.as_tensor(values, dtype=torch.float64)
    n = v.numel()
    if n == 0:
        raise ValueError("no episodes to summarise")
    mean = float(v.mean())
    std = float(v.std(unbiased=True)) if n > 1 else 0.0
    return mean, Z_95 * std / math.sqrt(n), std


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


@torch.no_grad()
def evaluate(learner: Predictor, sampler: EpisodeSampler, episodes: int, device: torch.device | str = "cpu",
             progress: bool = True) -> EvalResult:
    """Accuracy of ``learner.predict`` on episodes 0..episodes-1 of ``sampler``.

    Learners that adapt at test time (MAML) re-enable gradients inside their own ``predict``.
    """
    accs = []
    for i in tqdm(range(episodes), desc="evaluating", unit="ep", disable=not progress, leave=False):
        ep = sampler.episode(i).to(device)
        accs.append(accuracy(learner.predict(ep), ep.query_y))
    mean, ci, std = mean_ci95(accs)
    return EvalResult(accuracy=mean, ci95=ci, episodes=episodes, std=std, per_episode=accs)
