"""The distributed section: how many workers, on what, and which jobs can share their steps among them."""

from __future__ import annotations

from ..config import RunConfig
from ..errors import ConfigError
from ..search.strategies import STRATEGIES

BACKENDS = ("gloo", "nccl")
KEY = "distributed"


def check_distributed(cfg: RunConfig) -> None:
    dc = cfg.distributed
    if dc.workers < 1:
        raise ConfigError(f"{KEY}.workers: must be at least 1, got {dc.workers}", key=f"{KEY}.workers")
    if dc.cpus_per_worker <= 0:
        raise ConfigError(f"{KEY}.cpus_per_worker: must be positive, got {dc.cpus_per_worker}",
                          key=f"{KEY}.cpus_per_worker")
    if dc.backend not in BACKENDS:
        raise ConfigError(f"{KEY}.backend: '{dc.backend}' is not a backend; use gloo (CPU or GPU) or nccl (GPU)",
                          key=f"{KEY}.backend")
    if dc.backend == "nccl" and not dc.use_gpu:
        raise ConfigError(f"{KEY}.backend: nccl runs on GPUs only; set {KEY}.use_gpu: true, or backend: gloo",
                          key=f"{KEY}.backend")
    if dc.workers == 1:
        return
    # what is not shared among workers yet is refused rather than run on one of them unannounced
    for active, key, what in (
            (cfg.pretrain.steps > 0, "pretrain.steps", "pretraining"),
            (cfg.train.hard_tasks > 0, "train.hard_tasks", "hard tasks (built from one worker's failures)"),
            # a search config may have no retrain (fsnas search); fsnas run / retrain of it is refused on opening
            (cfg.train.steps == 0 and not cfg.search.enabled, "train.steps", "a run without meta-training steps")):
        if active:
            raise ConfigError(f"{KEY}.workers: {what} does not run on several workers yet ({key}); set "
                              f"{KEY}.workers: 1 for it", key=f"{KEY}.workers")
    if not STRATEGIES[cfg.search.sampler].data_parallel:
        raise ConfigError(f"{KEY}.workers: the {cfg.search.sampler} sampler does not average its gradients over "
                          f"workers (its class does not declare data_parallel); set {KEY}.workers: 1 for it",
                          key=f"{KEY}.workers")


def check_retrain_on_workers(cfg: RunConfig) -> None:
    """A retrain (fsnas retrain / run) on several workers needs meta-training steps to share."""
    if cfg.distributed.workers > 1 and cfg.train.steps == 0:
        raise ConfigError(f"{KEY}.workers: a run without meta-training steps does not run on several workers yet "
                          f"(train.steps); set {KEY}.workers: 1 for it", key=f"{KEY}.workers")
