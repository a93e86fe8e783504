"""The train section: the learner by name and its options, meta-training's steps and episodes."""

from __future__ import annotations

from meta.learners import GIVEN, LEARNERS

from ..config import TrainConfig
from ..errors import ConfigError
from .episodes import check_episode
from .losses import check_loss
from .options import check_options, factory_params, known, positive

def learner_options(name: str) -> dict:
    """The options ``train.options`` may set for learner ``name``: its constructor's, less what the pipeline
    gives it from the task and the data."""
    return factory_params(LEARNERS[name], ("self", "model", *GIVEN))


def check_train(tc: TrainConfig) -> None:
    known("train.learner", tc.learner, LEARNERS)
    learner = LEARNERS[tc.learner]
    check_options("train.options", tc.options, learner_options(tc.learner), f"learner {tc.learner}")
    check_loss("train.options", tc.options, episodic=learner.takes_loss)
    if tc.amp and not learner.mixed_precision:
        able = ", ".join(n for n in LEARNERS if LEARNERS[n].mixed_precision)
        raise ConfigError(f"train.amp: the {tc.learner} learner does not run in mixed precision (those that do: "
                          f"{able}); set train.amp: false", key="train.amp")
    positive("train.steps", tc.steps, 0)
    if tc.steps and not learner.meta_trains:
        raise ConfigError(f"train.steps: the {tc.learner} learner does not meta-train; set train.steps=0 "
                          f"(its backbone comes from pretrain.steps or model.weights)", key="train.steps")
    for key, value in (("train.meta_batch", tc.meta_batch), ("train.log_every", tc.log_every),
                       ("train.checkpoint_every", tc.checkpoint_every), ("train.val_episodes", tc.val_episodes)):
        positive(key, value)
    positive("train.val_every", tc.val_every, 0)
    positive("train.hard_tasks", tc.hard_tasks, 0)
    check_episode("train.episode", tc.episode)
