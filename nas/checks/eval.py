"""The eval section: the test tasks, episodes, BatchNorm mode and test-time inner steps, against the learner."""

from __future__ import annotations

from meta.batchnorm import BN_MODES
from meta.learners import LEARNERS

from ..config import EvalConfig, TrainConfig
from ..errors import ConfigError
from .episodes import check_episode
from .options import positive


def check_eval(ec: EvalConfig, tc: TrainConfig) -> None:
    if not ec.tasks:
        raise ConfigError("eval.tasks: empty; give at least one task such as {n_way: 5, k_shot: 1, n_query: 15}")
    positive("eval.episodes", ec.episodes)
    for i, task in enumerate(ec.tasks):
        check_episode(f"eval.tasks.{i}", task)
    learner = LEARNERS[tc.learner]
    if learner.fixed_ways:  # a learner with an n_way classifier head (MAML) tests the ways it learned
        for i, task in enumerate(ec.tasks):
            if task.n_way != tc.episode.n_way:
                raise ConfigError(f"eval.tasks.{i}.n_way: learner {tc.learner} meta-trains a "
                                  f"{tc.episode.n_way}-way head and cannot test {task.n_way}-way tasks; "
                                  f"set train.episode.n_way={task.n_way} or test {tc.episode.n_way}-way",
                                  key=f"eval.tasks.{i}.n_way")
    if ec.inner_steps is not None:
        if ec.inner_steps < 0:
            raise ConfigError(f"eval.inner_steps: {ec.inner_steps} must be >= 0 (or null: the learner's own)",
                              key="eval.inner_steps")
        if not learner.inner_loop:
            raise ConfigError(f"eval.inner_steps: the {tc.learner} learner has no inner loop at test time; "
                              f"leave eval.inner_steps null", key="eval.inner_steps")
    if ec.bn_mode not in BN_MODES:
        raise ConfigError(f"eval.bn_mode: '{ec.bn_mode}' is not a BatchNorm mode; use eval or transductive")
