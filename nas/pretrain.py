"""The pretraining phase of a retrain run: many-way classification on the meta-training classes before
meta-training (MTL phase 1).  Logged as phase 'pretrain', checkpointed atomically, resumed after a kill;
the classifier is dropped afterwards and the backbone goes on to the learner."""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm import tqdm

from meta.data import FewShotDataset
from meta.learners.fast_weights import feature_dim
from meta.pretrain import ImageBatches, Pretrainer, base_class_accuracy, retrain_classifier, tau_normalized

from .config import RunConfig
from .divergence import DivergenceGuard
from .errors import ConfigError
from .runs import RunDir


def run_pretrain(cfg: RunConfig, ds: FewShotDataset, backbone: nn.Module, run: RunDir, device: torch.device,
                 progress: bool = True) -> dict:
    pc = cfg.pretrain
    batches = ImageBatches(ds, pc.split, pc.batch_size, seed=cfg.seed, sampling=pc.sampling, total=pc.steps)
    counts = batches.class_counts()
    try:
        trainer = Pretrainer(backbone, batches.num_classes, feature_dim(backbone, ds.image_shape), pc.steps,
                             class_counts=counts, **pc.options)
    except ValueError as exc:
        raise ConfigError(f"pretrain.options: {exc}", key="pretrain.options") from None
    start = 0
    state = run.load_checkpoint("pretrain", map_location=device)
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        run.truncate_metrics("pretrain", start)
    window: list[dict] = []
    guard = DivergenceGuard("pretrain", f"Lower the learning rate (pretrain.options in {run.config_path})")
    t0 = time.perf_counter()
    for step in tqdm(range(start, pc.steps), initial=start, total=pc.steps, desc="pretrain", unit="step",
                     disable=not progress, dynamic_ncols=True):
        x, y = batches.batch(step)
        x = x.to(device, memory_format=torch.channels_last) if cfg.channels_last else x.to(device)
        window.append(trainer.step(x, y.to(device)))
        done = step + 1
        guard.loss(done, window[-1]["loss"])
        if done % pc.log_every == 0 or done == pc.steps:
            run.log({"phase": "pretrain", "step": done, **{k: sum(m[k] for m in window) / len(window)
                                                           for k in window[-1]}})
            window = []
        if done % pc.checkpoint_every == 0 or done == pc.steps:
            state = {"step": done, "trainer": trainer.state_dict(), "rng": torch.get_rng_state()}
            guard.state(done, state, "pretraining checkpoint")
            run.save_checkpoint("pretrain", state)
    last = [r for r in run.read_metrics() if r.get("phase") == "pretrain"]
    # seconds: this process's pretraining (not counting a resumed run's earlier part)
    out = {"steps": pc.steps, "classes": batches.num_classes, "seconds": round(time.perf_counter() - t0, 1)}
    if last:
        out.update(final_loss=last[-1]["loss"], final_accuracy=last[-1]["accuracy"])
    lt = cfg.data.long_tail
    if lt.imbalance is not None and lt.heldout and lt.split == pc.split:  # at the final step, never the best one
        heldout = ImageBatches(ds, f"{pc.split}_heldout", 256, seed=cfg.seed)
        out["base_classes"] = base_class_accuracy(backbone, trainer.classifier, heldout, counts, lt.many, lt.few)
        run.log({"phase": "pretrain_eval", "step": pc.steps, **out["base_classes"]})
        if pc.tau_norm is not None:
            out["base_classes_tau_norm"] = {"tau": pc.tau_norm, **base_class_accuracy(
                backbone, tau_normalized(trainer.classifier, pc.tau_norm), heldout, counts, lt.many, lt.few)}
            run.log({"phase": "pretrain_eval_tau_norm", "step": pc.steps, **out["base_classes_tau_norm"]})
        if pc.crt.steps:
            balanced = ImageBatches(ds, pc.split, pc.batch_size, seed=cfg.seed + 1, sampling=pc.crt.sampling)
            t1 = time.perf_counter()
            crt = retrain_classifier(backbone, balanced, trainer.classifier.in_features, pc.crt.steps, lr=pc.crt.lr)
            out["base_classes_crt"] = {"steps": pc.crt.steps, "sampling": pc.crt.sampling,
                                       "seconds": round(time.perf_counter() - t1, 1),
                                       **base_class_accuracy(backbone, crt, heldout, counts, lt.many, lt.few)}
            run.log({"phase": "pretrain_eval_crt", "step": pc.steps, **out["base_classes_crt"]})
    return out
