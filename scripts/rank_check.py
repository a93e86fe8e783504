"""Rank check (one-shot "rationality"): does the supernet rank architectures as training them would?

    FSNAS_DATA_ROOT=../shared/data python scripts/rank_check.py RUN_DIR [--archs 10] [--train-steps 300]

RUN_DIR is a finished ``fsnas search`` run (its config and checkpoints/search.pt).  ``--archs``
architectures are drawn uniformly from its space (seeded); each is scored (1) with the weights it
inherits from the supernet, after BatchNorm recalibration, and (2) trained stand-alone from scratch with
ProtoNet for ``--train-steps`` episodes; both on the same meta-validation episodes.  Prints Kendall's tau
and writes every figure to ``RUN_DIR/rank_check.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from meta.evaluation import evaluate
from meta.learners import ProtoNet
from nas.checks import load_config
from nas.pipeline import prepare
from nas.runs import RunDir
from nas.search.evolution import score_path
from nas.search.loop import search_samplers
from nas.search.ranking import kendall_tau
from search_spaces import build_network


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args()
    run = RunDir.open(args.run_dir)
    cfg = load_config(run.config_path)
    prepared = prepare(cfg, train=False, test=False, search=True)
    ds, device, supernet = prepared.ds, prepared.device, prepared.search.supernet
    supernet.load_state_dict(run.load_checkpoint("search")["supernet"])
    train, val = search_samplers(cfg, ds)
    episodes = [val.episode(10**5 + i).to(device) for i in range(args.eval_episodes)]
    batches = [torch.cat([e.support_x, e.query_x]) for e in
               (train.episode(10**6 + i).to(device) for i in range(cfg.search.evolution.bn_batches))]

    gen, archs = torch.Generator().manual_seed(args.seed), []
    for _ in range(50 * args.archs):  # distinct architectures; bounded
        g = supernet.sample_path(gen)
        if g not in archs:
            archs.append(g)
        if len(archs) == args.archs:
            break
    rows = []
    for k, g in enumerate(archs):
        one_shot = score_path(supernet, g, batches, episodes)
        torch.manual_seed(args.seed + k)
        learner = ProtoNet(build_network(g, ds.image_shape[0]).to(device), lr=1e-3)
        t0 = time.perf_counter()
        for step in range(args.train_steps):
            learner.meta_train_step([train.episode(2 * 10**6 + step).to(device)])
        trained = evaluate(learner, _Fixed(episodes), len(episodes), device, progress=False).accuracy
        rows.append({"genotype": g.to_dict(), "params": g.params(ds.image_shape), "one_shot": one_shot,
                     "stand_alone": trained, "train_seconds": round(time.perf_counter() - t0, 1)})
        print(f"arch {k}: one-shot {100 * one_shot:.2f}%  stand-alone {100 * trained:.2f}%  "
              f"({rows[-1]['params']:,} params)", flush=True)
    tau = kendall_tau([r["one_shot"] for r in rows], [r["stand_alone"] for r in rows])
    out = {"run": str(run.path), "archs": len(rows), "train_steps": args.train_steps,
           "eval_episodes": args.eval_episodes, "seed": args.seed, "kendall_tau": tau, "rows": rows}
    (Path(run.path) / "rank_check.json").write_text(json.dumps(out, indent=2))
    print(f"Kendall tau over {len(rows)} architectures: {tau:.3f}")


class _Fixed:
    """The same pre-drawn episodes for every evaluation (a sampler-like view)."""

    def __init__(self, episodes):
        self.episodes = episodes

    def episode(self, i):
        return self.episodes[i]


if __name__ == "__main__":
    main()
