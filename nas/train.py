"""The meta-training loop: drives any learner on seeded episodes, logs, validates, checkpoints, resumes.

Episode ``i`` depends only on the seed and ``i`` and the checkpoint holds the learner (model,
optimiser, scheduler) and the torch RNG state, so a run resumed after a kill continues exactly where the
last checkpoint left it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from meta.data import FewShotDataset
from meta.episodes import EpisodeSampler
from meta.evaluation import evaluate
from meta.hard_tasks import hard_episodes
from meta.learners import Learner

from .config import EpisodeConfig, RunConfig
from .divergence import DivergenceGuard
from .runs import RunDir

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    seconds: float  # training time of this process (not counting a resumed run's earlier part)
    episodes_per_second: float
    final_loss: float | None  # None when no step ran (train.steps: 0, or resumed at the end)
    final_accuracy: float | None
    best_val_accuracy: float | None
    best_step: int | None


def episode_sampler(ds: FewShotDataset, split: str, ep: EpisodeConfig, seed: int,
                    device: torch.device | None = None) -> EpisodeSampler:
    """Episodes of ``ep``'s shape, made on ``device`` (the dataset's images copied there once)."""
    return EpisodeSampler(ds, split, ep.n_way, ep.k_shot, ep.n_query, seed=seed, profile=ep.shot_profile,
                          min_shot=ep.min_shot, device=device)


def train_sampler(cfg: RunConfig, ds: FewShotDataset, device: torch.device | None = None) -> EpisodeSampler:
    return episode_sampler(ds, cfg.train.split, cfg.train.episode, cfg.seed, device)


def val_sampler(cfg: RunConfig, ds: FewShotDataset, device: torch.device | None = None) -> EpisodeSampler:
    # validate on the first evaluation task: that is what the run reports
    return episode_sampler(ds, cfg.train.val_split, cfg.eval.tasks[0], cfg.seed + 7919, device)


def meta_train(cfg: RunConfig, ds: FewShotDataset, learner: Learner, run: RunDir, device: torch.device,
               progress: bool = True) -> TrainResult:
    tc = cfg.train
    sampler = train_sampler(cfg, ds, device) if tc.steps else None  # steps 0: none (a split may not fit them)
    validator = val_sampler(cfg, ds, device) if tc.val_every else None
    start, best_acc, best_step = 0, None, None

    state = run.load_checkpoint("last")
    if state is not None:
        learner.load_state_dict(state["learner"])
        torch.set_rng_state(state["rng"])
        start, best_acc, best_step = int(state["step"]), state.get("best_acc"), state.get("best_step")
        run.truncate_metrics("train", start)
        run.truncate_metrics("val", start)
        log.info("resuming %s from step %d", run.path, start)

    guard = DivergenceGuard("meta-train", f"Lower the learning rate or its schedule (train.options in {run.config_path})")
    window_loss, window_acc, window_hard, window_start = [], [], [], time.perf_counter()
    t0, last = time.perf_counter(), {"loss": float("nan"), "accuracy": float("nan")}
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="meta-train", unit="step",
               disable=not progress, dynamic_ncols=True)
    ranks = learner.ranks  # data-parallel: this process's share of every step's episodes (meta.parallel)
    for step in bar:
        episodes = [sampler.episode(i).to(device) for i in ranks.episode_indices(step, tc.meta_batch)]
        learner.set_progress(step, tc.steps)
        last = learner.meta_train_step(episodes)
        if ranks.parallel:
            learner.sync_buffers()
        guard.loss(step + 1, last["loss"])
        if tc.hard_tasks and "hard_classes" in last:  # a second update on tasks of this step's failure classes
            hard = learner.meta_train_step([e.to(device) for e in
                                            hard_episodes(sampler, last["hard_classes"], tc.hard_tasks, step)])
            guard.loss(step + 1, hard["loss"])
            window_hard.append(hard["accuracy"])
        window_loss.append(last["loss"])
        window_acc.append(last["accuracy"])
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            elapsed = time.perf_counter() - window_start
            record = {"phase": "train", "step": done, "loss": sum(window_loss) / len(window_loss),
                      "accuracy": sum(window_acc) / len(window_acc), "lr": last.get("lr"),
                      "episodes_per_s": len(window_loss) * (tc.meta_batch * ranks.world + tc.hard_tasks) / max(elapsed, 1e-9)}
            if window_hard:
                record["hard_accuracy"] = sum(window_hard) / len(window_hard)
            run.log(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
            window_loss, window_acc, window_hard, window_start = [], [], [], time.perf_counter()
        if validator is not None and ranks.leader and (done % tc.val_every == 0 or done == tc.steps):
            res = evaluate(learner, validator, tc.val_episodes, device, progress=False)
            run.log({"phase": "val", "step": done, "accuracy": res.accuracy, "ci95": res.ci95})
            if best_acc is None or res.accuracy > best_acc:
                best = {"step": done, "model": learner.model.state_dict(), "learner": learner.trained_state(),
                        "val_accuracy": res.accuracy}
                guard.state(done, best, "best checkpoint")
                best_acc, best_step = res.accuracy, done
                run.save_checkpoint("best", best)
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            state = {"step": done, "learner": learner.state_dict(), "rng": torch.get_rng_state(),
                     "best_acc": best_acc, "best_step": best_step}
            guard.state(done, state, "checkpoint")
            run.save_checkpoint("last", state)
    seconds = time.perf_counter() - t0
    steps_run = tc.steps - start
    return TrainResult(steps=tc.steps, seconds=seconds,
                       episodes_per_second=steps_run * (tc.meta_batch * learner.ranks.world + tc.hard_tasks) / max(seconds, 1e-9),
                       final_loss=float(last["loss"]) if steps_run else None,
                       final_accuracy=float(last["accuracy"]) if steps_run else None,
                       best_val_accuracy=best_acc, best_step=best_step)
